"""dciodvfy (dicom3tools) as the tests' validator: every "0 errors" claim in the suite rests on it.

A file counts as valid only when dciodvfy read it, said something about it, exited 0 and wrote no
line containing "Error" (its messages take several shapes: ``Error - ...`` at the start of a line,
``(0x6167,0x6272) ? - Error - Bad Value Length`` in the middle of one). dciodvfy exits 1 on an
unreadable or invalid object, sometimes with no output at all: that is a failure, never "0 errors".
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom

from tests.conftest import require_tool


def dciodvfy_errors(path: Path) -> list[str]:
    """The problems dciodvfy reports for ``path`` (an empty list when it is valid)."""
    run = subprocess.run([require_tool("dciodvfy"), str(path)], capture_output=True, text=True, check=False)
    output = (run.stdout + run.stderr).splitlines()
    errors = [line for line in output if "Error" in line]
    if run.returncode != 0:
        errors.append(f"dciodvfy exited with status {run.returncode}")
    if not output:
        errors.append("dciodvfy printed nothing (it did not read the object)")
    return errors


def dataset_errors(ds: pydicom.Dataset, folder: Path) -> list[str]:
    """:func:`dciodvfy_errors` for a dataset in memory, written as a DICOM file under ``folder``."""
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return dciodvfy_errors(path)
