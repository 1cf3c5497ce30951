"""The validator wrapper itself: it must not pass what dciodvfy could not read."""

from __future__ import annotations

from pathlib import Path

import pytest

from phantom import generate_study, write_study
from tests.dciodvfy import dciodvfy_errors


@pytest.fixture(scope="module")
def good_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_study(generate_study(3, matrix=(256, 256)), tmp_path_factory.mktemp("phantom"))
    return sorted((folder / "series").glob("*.dcm"))[0]


def test_a_valid_instance_has_no_errors(good_file: Path) -> None:
    assert dciodvfy_errors(good_file) == []


def test_an_empty_file_fails(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    assert dciodvfy_errors(empty)


def test_a_missing_file_fails(tmp_path: Path) -> None:
    assert dciodvfy_errors(tmp_path / "absent.dcm")


def test_a_truncated_file_fails(good_file: Path, tmp_path: Path) -> None:
    data = good_file.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 3])
    assert dciodvfy_errors(cut)


def test_a_corrupted_length_inside_the_dataset_fails(good_file: Path, tmp_path: Path) -> None:
    """A wrong value length makes dciodvfy write "... - Error - ..." in the middle of a line."""
    data = bytearray(good_file.read_bytes())
    tag = data.find(b"\x08\x00\x3e\x10")  # (0008,103E) Series Description, explicit VR little endian
    assert tag > 0
    data[tag + 6: tag + 8] = (0xFFF0).to_bytes(2, "little")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(bytes(data))
    errors = dciodvfy_errors(bad)
    assert errors, "a corrupted length was reported valid"
