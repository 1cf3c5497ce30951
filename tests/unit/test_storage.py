from __future__ import annotations

from pathlib import Path

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
from dicomnode.errors import InvalidUIDError
from pipeline.uids import derived_uid


@pytest.mark.parametrize("uid", ["1.2.3", "2.25.123456789", "1.2.840.10008.5.1.4.1.1.4", "0.1"])
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
