"""Print the SOP class and transfer syntax tables of docs/conformance.md's appendix from the code.

The Storage SCP's contexts come from ``dicomnode.scp.make_ae``, the same function the running node
uses; tests/integration/test_conformance_statement.py checks the document against a real
association. Run it after upgrading pynetdicom and paste its output between the markers:

    .venv/bin/python scripts/conformance_tables.py
"""

from __future__ import annotations

import functools
import re

from pydicom.uid import UID
from pynetdicom import sop_class

from dicomnode.config import NodeConfig
from dicomnode.scp import make_ae

VERIFICATION = "1.2.840.10008.1.1"  # its own table in the statement (default transfer syntaxes)


def name(uid: str) -> str:
    """pydicom's name of ``uid``, else pynetdicom's keyword spelt out (UIDs newer than pydicom)."""
    known = UID(uid).name
    if known != uid:
        return known
    keyword = _storage_keywords().get(uid, uid)
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", keyword)


@functools.cache
def _storage_keywords() -> dict[str, str]:
    """pynetdicom's storage SOP class keywords by UID (built once)."""
    return {v: k for k, v in sop_class._STORAGE_CLASSES.items()}  # noqa: SLF001


def accepted() -> tuple[list[str], list[str]]:
    """(storage SOP classes, their transfer syntaxes) the SCP accepts, in the code's order."""
    storage = [cx for cx in make_ae(NodeConfig()).supported_contexts if cx.abstract_syntax != VERIFICATION]
    classes = [str(cx.abstract_syntax) for cx in storage]
    syntaxes: list[str] = []
    for cx in storage:
        syntaxes += [str(ts) for ts in cx.transfer_syntax if str(ts) not in syntaxes]
    return classes, syntaxes


def main() -> None:
    classes, syntaxes = accepted()
    print("### A.1 SOP classes accepted by the Storage SCP (SCP role)\n")
    print("| SOP class | UID |\n| --- | --- |")
    for uid in sorted(classes, key=lambda u: (name(u).lower(), u)):
        print(f"| {name(uid)} | `{uid}` |")
    print("\n### A.2 Transfer syntaxes accepted for each of them\n")
    print("| Transfer syntax | UID |\n| --- | --- |")
    for uid in syntaxes:
        print(f"| {name(uid)} | `{uid}` |")


if __name__ == "__main__":
    main()
