from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.dsutils import create_file_meta, encode, encode_file_meta

from dicomnode import storage
from dicomnode.errors import DiskFullError, InvalidUIDError
from pipeline.uids import derived_uid


@pytest.mark.parametrize("uid", ["1.2.3", "2.25.123456789", "1.2.840.10008.5.1.4.1.1.4", "0.1", "1", "1" * 64])
def test_valid_uids(uid: str) -> None:
    assert storage.is_valid_uid(uid)


@pytest.mark.parametrize("uid", ["", "1..2", "1.02", "../../etc/passwd", "1.2.3/..", "1.2.a",
                                 ".1.2", "1.2.", "1" * 65, None, 123, "1.2.3 "])
def test_invalid_uids(uid: object) -> None:
    assert not storage.is_valid_uid(uid)


def test_paths_never_leave_the_instances_folder() -> None:
    with pytest.raises(InvalidUIDError):
        storage.instance_relpath("1.2", "../../x", "1.3")
    assert storage.instance_relpath("1.2", "1.3", "1.4") == Path("instances/1.2/1.3/1.4.dcm")


@pytest.mark.parametrize(("uids", "message"), [
    (("../x", "1.3", "1.4"), "StudyInstanceUID '../x' is missing or not a valid UID"),
    (("1.2", "1.3/..", "1.4"), "SeriesInstanceUID '1.3/..' is missing or not a valid UID"),
    (("1.2", "1.3", ""), "SOPInstanceUID '' is missing or not a valid UID"),
])
def test_a_refused_path_names_the_uid_at_fault(uids: tuple[str, str, str], message: str) -> None:
    with pytest.raises(InvalidUIDError) as excinfo:
        storage.instance_relpath(*uids)
    assert str(excinfo.value) == message


def test_a_refused_uid_is_shown_cut_to_eighty_characters() -> None:
    """A sender's junk reaches the log only as a bounded repr (80 characters)."""
    with pytest.raises(InvalidUIDError) as excinfo:
        storage.require_uid("SOPInstanceUID", "x" * 500)
    assert str(excinfo.value) == f"SOPInstanceUID '{'x' * 79} is missing or not a valid UID"


def test_a_refused_non_text_uid_is_shown_as_its_repr() -> None:
    with pytest.raises(InvalidUIDError) as excinfo:
        storage.require_uid("StudyInstanceUID", None)
    assert str(excinfo.value) == "StudyInstanceUID None is missing or not a valid UID"


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.dcm"
    storage.write_atomic(target, b"x" * 1000, fsync=True)
    storage.write_atomic(target, b"y" * 10, fsync=False)
    assert target.read_bytes() == b"y" * 10
    assert [p.name for p in target.parent.iterdir()] == ["b.dcm"]


def test_derived_uids_are_deterministic_valid_and_distinct() -> None:
    a, b = derived_uid("x", 1), derived_uid("x", 2)
    assert a == derived_uid("x", 1) and a != b
    assert storage.is_valid_uid(a) and a.startswith("2.25.")


@pytest.mark.parametrize("sop_instance_uid", ["1.2.3", "1.2.34", "2.25." + "9" * 59])
@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.80"])
def test_file_preamble_is_byte_for_byte_what_pynetdicom_writes(sop_instance_uid: str, transfer_syntax: str) -> None:
    expected = b"\0" * 128 + b"DICM" + encode_file_meta(create_file_meta(
        sop_class_uid=UID("1.2.840.10008.5.1.4.1.1.4"), sop_instance_uid=UID(sop_instance_uid),
        transfer_syntax=UID(transfer_syntax)))
    assert storage.file_preamble("1.2.840.10008.5.1.4.1.1.4", sop_instance_uid, transfer_syntax) == expected


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian,
                                             DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_the_header_read_from_the_bytes_as_received_matches_the_whole_file(
        transfer_syntax: UID, series_files) -> None:  # noqa: ANN001
    ds = pydicom.dcmread(series_files(101)[3])
    stream = encode(ds, transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian,
                    transfer_syntax.is_deflated)
    assert stream is not None
    header = storage.read_header(stream, transfer_syntax)
    assert "PixelData" not in header
    summary = storage.summarise(header)
    assert summary == storage.summarise(ds)
    assert summary.sop_instance_uid == ds.SOPInstanceUID and summary.rows == ds.Rows
    assert summary.position == [float(v) for v in ds.ImagePositionPatient]
    assert summary.series_attrs["Modality"] == "MR"


def test_bytes_that_are_not_a_data_set_raise() -> None:
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever pydicom raises: the handler answers 0xC210
        storage.summarise(storage.read_header(b"\x08\x00\x18\x00UI\xff\xff" + b"1" * 10, ExplicitVRLittleEndian))


def test_a_file_written_in_parts_gets_its_name_only_when_committed(tmp_path: Path) -> None:
    tmp = storage.write_temp(tmp_path / "s", b"ab", b"cd", fsync=True)
    assert tmp.parent == tmp_path / "s" and tmp.name.startswith(".incoming-") and tmp.read_bytes() == b"abcd"
    storage.commit_file(tmp, tmp_path / "s" / "x.dcm", fsync=True)
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["x.dcm"]
    assert storage.sha256(b"ab", b"cd") == storage.sha256(b"abcd")


def test_what_a_killed_node_left_half_received_is_cleared_and_nothing_else(tmp_path: Path) -> None:
    left = storage.write_temp(tmp_path / storage.INCOMING, b"half", fsync=False)
    other = tmp_path / storage.INCOMING / "keep.txt"
    other.write_text("not ours")
    assert storage.clear_incoming(tmp_path) == 1
    assert not left.exists() and other.exists()


def test_the_preamble_pads_an_odd_text_value_with_a_space(monkeypatch: pytest.MonkeyPatch) -> None:
    """UI values are padded with NUL, other text (the SH version name) with a space (PS3.5 6.2)."""
    monkeypatch.setattr(storage, "PYNETDICOM_IMPLEMENTATION_VERSION", "SPINE_1")
    expected = b"\0" * 128 + b"DICM" + encode_file_meta(create_file_meta(
        sop_class_uid=UID("1.2.840.10008.5.1.4.1.1.4"), sop_instance_uid=UID("1.2.3"),
        transfer_syntax=UID("1.2.840.10008.1.2.1"), implementation_version="SPINE_1"))
    preamble = storage.file_preamble("1.2.840.10008.5.1.4.1.1.4", "1.2.3", "1.2.840.10008.1.2.1")
    assert preamble == expected
    assert preamble.endswith(b"SH\x08\x00SPINE_1 ")


def test_leftovers_are_all_counted(tmp_path: Path) -> None:
    for _ in range(3):
        storage.write_temp(tmp_path / storage.INCOMING, b"half", fsync=False)
    assert storage.clear_incoming(tmp_path) == 3
    assert list((tmp_path / storage.INCOMING).iterdir()) == []


def test_clearing_a_node_that_never_received_anything_removes_nothing(tmp_path: Path) -> None:
    assert storage.clear_incoming(tmp_path) == 0


def test_temporary_and_final_folders_are_created_with_their_parents(tmp_path: Path) -> None:
    tmp = storage.write_temp(tmp_path / "a" / "b", b"data", fsync=False)
    final = tmp_path / "c" / "d" / "x.dcm"
    storage.commit_file(tmp, final, fsync=False)
    assert final.read_bytes() == b"data" and not tmp.exists()


def test_a_failed_temporary_write_leaves_nothing_behind(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    with pytest.raises(TypeError):
        storage.write_temp(folder, b"ok", "not bytes", fsync=False)  # type: ignore[arg-type]
    assert list(folder.iterdir()) == []


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record what each ``os.fsync`` flushes ("file" or "folder"), then flush it for real."""
    flushed: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        flushed.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(storage.os, "fsync", recording_fsync)
    return flushed


def test_an_fsynced_atomic_write_flushes_the_file_and_then_its_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed = _record_fsyncs(monkeypatch)
    storage.write_atomic(tmp_path / "x.dcm", b"data", fsync=True)
    assert flushed == ["file", "folder"]


def test_an_atomic_write_without_fsync_flushes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flushed = _record_fsyncs(monkeypatch)
    storage.write_atomic(tmp_path / "x.dcm", b"data", fsync=False)
    assert flushed == []


def test_a_failed_commit_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "x.dcm"
    target.mkdir()  # a folder where the file should go: the rename fails
    with pytest.raises(OSError):
        storage.write_atomic(target, b"data", fsync=False)
    assert [p.name for p in tmp_path.iterdir()] == ["x.dcm"] and target.is_dir()


def test_a_failed_folder_flush_is_reported_as_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rename has happened when the folder's fsync fails: the caller sees that error, not a
    complaint about the temporary file that is already gone."""
    def failing_fsync_folder(folder: Path) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(storage, "fsync_folder", failing_fsync_folder)
    with pytest.raises(OSError) as excinfo:
        storage.write_atomic(tmp_path / "x.dcm", b"data", fsync=True)
    assert excinfo.value.errno == errno.EIO
    assert [p.name for p in tmp_path.iterdir()] == ["x.dcm"]


MIB = 1024 * 1024


def _fake_free_space(monkeypatch: pytest.MonkeyPatch, free: int) -> None:
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda path: SimpleNamespace(total=free, used=0, free=free))


def test_free_space_is_measured_on_the_data_folder(tmp_path: Path) -> None:
    storage.check_free_space(tmp_path, 0, 0)
    with pytest.raises(DiskFullError):
        storage.check_free_space(tmp_path, 2**40, 0)  # a petabyte-sized floor


def test_exactly_the_minimum_left_after_the_write_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_free_space(monkeypatch, 100 * MIB)
    storage.check_free_space(Path("/data"), 100, 0)
    storage.check_free_space(Path("/data"), 90, 10 * MIB)


def test_one_byte_below_the_minimum_after_the_write_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_free_space(monkeypatch, 100 * MIB)
    with pytest.raises(DiskFullError):
        storage.check_free_space(Path("/data"), 100, 1)


def test_disk_full_names_the_free_megabytes_and_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_free_space(monkeypatch, 1000 * MIB + MIB // 2)
    with pytest.raises(DiskFullError) as excinfo:
        storage.check_free_space(Path("/data"), 2000, 0)
    assert str(excinfo.value) == "only 1000 MB free under data_dir; node.min_free_disk_mb is 2000"
