from __future__ import annotations

from pathlib import Path

import pytest

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
