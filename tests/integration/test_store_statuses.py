"""Every C-STORE status the node answers, and every reason a series is not analysed, each produced
for real through a running node: a file whose dataset contradicts its request, undecodable bytes, a
late instance, series with a gap, uneven spacing, no position, no contrast, a missing phase or no
signal. (0xA700, 0xA701 and 0xA702 are made by a full disk, an unwritable folder and a closed
database in ``test_node.py``; the orientation, matrix and pixel reasons there too.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pynetdicom import _config

from dicomnode.db import JobState
from dicomnode.node import Node
from tests.conftest import wait_for
from tests.integration.test_fuzz import Sender
from tests.integration.test_node import _altered_series, jobs, send, series_rows
from tests.mutations import encode, split

ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"


def _events(node: Node, event: str) -> list[dict]:
    lines = (node.cfg.data_dir / "logs" / "spinenode.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == event]


def _stored_files(node: Node) -> list[Path]:
    return sorted((node.cfg.data_dir / "instances").rglob("*.dcm"))


def raw_store(node: Node, path: Path, monkeypatch: pytest.MonkeyPatch) -> int | None | str:
    """C-STORE the file's bytes as they are (pynetdicom takes the request's SOP class and instance
    UIDs from its file meta and sends the data set undecoded), over a fresh association."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)
    sender = Sender(node.port)
    try:
        return sender.store(path)
    finally:
        sender.close()


def _one_file(source: Path, out: Path, change: Callable[[pydicom.Dataset], None]) -> Path:
    """``source`` with its data set changed but its file meta (the request's SOP class and instance
    UIDs) as it was."""
    raw = source.read_bytes()
    meta, _ = split(raw)
    ds = pydicom.dcmread(source)
    change(ds)
    out.write_bytes(meta + split(encode(ds))[1])
    return out


def _other_instance_uid(ds: pydicom.Dataset) -> None:
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"  # the file meta (the request) keeps the original


@pytest.fixture
def node(node_factory) -> Node:  # noqa: ANN001
    return node_factory(worker={"workers": 0})


def test_a_dataset_of_another_class_than_its_request_gets_0xa900(node: Node, series_files, tmp_path,  # noqa: ANN001
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The request (from the file meta) says MR Image Storage; the dataset says Enhanced MR."""
    path = _one_file(series_files(101)[0], tmp_path / "a.dcm", lambda ds: setattr(ds, "SOPClassUID", ENHANCED_MR))
    assert raw_store(node, path, monkeypatch) == 0xA900
    (event,) = _events(node, "store_refused")
    assert event["reason"] == "sop_class_mismatch" and event["calling_ae"] == "FUZZER"
    assert _stored_files(node) == [] and series_rows(node) == []


def test_a_dataset_whose_instance_uid_is_not_the_requested_one_gets_0xc211(node: Node, series_files,  # noqa: ANN001
                                                                          tmp_path,  # noqa: ANN001
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = _one_file(series_files(101)[0], tmp_path / "a.dcm", _other_instance_uid)
    assert raw_store(node, path, monkeypatch) == 0xC211
    (event,) = _events(node, "store_refused")
    assert event["reason"] == "sop_instance_mismatch"
    assert _stored_files(node) == [] and series_rows(node) == []


def test_undecodable_bytes_get_0xc210(node: Node, series_files, tmp_path,  # noqa: ANN001
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A valid file meta, then a sequence of undefined length whose item is never closed."""
    meta, _ = split(series_files(101)[0].read_bytes())
    broken = tmp_path / "broken.dcm"
    unclosed = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    broken.write_bytes(meta + unclosed + b"\x08\x00\x16\x00UI\x04\x00abcd")
    assert raw_store(node, broken, monkeypatch) == 0xC210
    (event,) = _events(node, "store_refused")
    assert event["reason"] == "undecodable"
    assert _stored_files(node) == []


@pytest.mark.parametrize("fsync", [True, False])
def test_a_refusal_leaves_no_temporary_file_and_the_next_instance_is_stored(  # noqa: ANN001
        node_factory, series_files, tmp_path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    """With fsync or without, the refused instance's bytes are never kept, not even as a temporary file."""
    node = node_factory(worker={"workers": 0}, node={"fsync": fsync})
    path = _one_file(series_files(101)[0], tmp_path / "a.dcm", _other_instance_uid)
    assert raw_store(node, path, monkeypatch) == 0xC211
    assert raw_store(node, series_files(101)[1], monkeypatch) == 0x0000
    assert list((node.cfg.data_dir / "incoming").iterdir()) == []
    assert [p.name for p in _stored_files(node)] == [f"{pydicom.dcmread(series_files(101)[1]).SOPInstanceUID}.dcm"]


@pytest.mark.parametrize("fsync", [True, False])
def test_on_a_full_disk_a_refused_header_is_still_answered_as_the_senders_fault(  # noqa: ANN001
        node_factory, series_files, tmp_path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    """The header's refusal comes first, as when the steps ran one after the other; a good instance
    then gets the full disk's 0xA700."""
    node = node_factory(worker={"workers": 0}, node={"fsync": fsync, "min_free_disk_mb": 10**9})
    path = _one_file(series_files(101)[0], tmp_path / "a.dcm", _other_instance_uid)
    assert raw_store(node, path, monkeypatch) == 0xC211
    assert raw_store(node, series_files(101)[1], monkeypatch) == 0xA700
    assert [e["reason"] for e in _events(node, "store_refused")] == ["sop_instance_mismatch", "disk_full"]


def test_an_instance_after_its_series_was_decided_is_kept_and_logged(node_factory, series_files,  # noqa: ANN001
                                                                     tmp_path) -> None:
    node = node_factory(worker={"workers": 0})
    files = series_files(101)
    assert send(node, files) == [0] * 12
    wait_for(lambda: len(jobs(node)) == 1, timeout=30)

    def thirteenth(ds: pydicom.Dataset) -> None:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID + ".13"

    ds = pydicom.dcmread(files[0])
    thirteenth(ds)
    late = tmp_path / "late.dcm"
    ds.save_as(late, enforce_file_format=True)
    assert send(node, [late]) == [0x0000]  # acknowledged and kept: nothing received is lost
    (event,) = _events(node, "instance_after_decision")
    assert event["sop_instance_uid"] == pydicom.dcmread(late).SOPInstanceUID
    assert len(_stored_files(node)) == 13 and len(jobs(node)) == 1  # no second job for the same series


def _shift_from(k0: int, by: float) -> Callable[[pydicom.Dataset, int], None]:
    def change(ds: pydicom.Dataset, k: int) -> None:
        if k >= k0:
            x, y, z = (float(v) for v in ds.ImagePositionPatient)  # axial phantoms: z is along the normal
            ds.ImagePositionPatient = [x, y, z + by * float(ds.SpacingBetweenSlices or ds.SliceThickness)]
    return change


def _no_position(ds: pydicom.Dataset, k: int) -> None:
    if k == 3:
        del ds.ImagePositionPatient


def _no_contrast(ds: pydicom.Dataset, k: int) -> None:
    ds.SeriesDescription = "t1_vibe_tra_native"
    if "ContrastBolusAgent" in ds:
        del ds.ContrastBolusAgent


def _two_phases_announced(ds: pydicom.Dataset, k: int) -> None:
    ds.NumberOfTemporalPositions = 2
    ds.TemporalPositionIdentifier = 1


def _no_signal(ds: pydicom.Dataset, k: int) -> None:
    ds.PixelData = bytes(len(ds.PixelData))


@pytest.mark.parametrize(("change", "reason"), [
    (_shift_from(6, 1.0), "gap"),
    (_shift_from(6, 0.5), "uneven_spacing"),
    (_no_position, "missing_geometry"),
    (_no_contrast, "no_contrast"),
    (_two_phases_announced, "phase_count"),
    (_no_signal, "input_out_of_range"),
])
def test_each_reason_ends_in_an_abstention_with_that_reason(node_factory, series_files, tmp_path,  # noqa: ANN001
                                                           change, reason: str) -> None:
    node = node_factory(protocol={"quiet_period_s": 1.0}, worker={"use_unet": False, "use_radiomics": False,
                                                                  "use_classifier": False})
    files = _altered_series(series_files(102), tmp_path / "bad", change)
    assert send(node, files) == [0] * 12
    job = wait_for(lambda: next((j for j in jobs(node) if j.state is JobState.ABSTAINED), None), timeout=30)
    assert reason in job.reasons, job.reasons
