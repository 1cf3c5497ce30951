"""docs/conformance.md against the running node: what it lists is what a real association gets.

A Storage SCU on localhost proposes every SOP class and transfer syntax the statement lists (all
accepted), and every SOP class pynetdicom knows that it does not list (all refused)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pynetdicom import AE, sop_class
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

from tests.conftest import REPO

STATEMENT = REPO / "docs" / "conformance.md"
VERIFICATION = "1.2.840.10008.1.1"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
MAX_CONTEXTS = 120  # at most 128 presentation contexts per association


def section(title: str, text: str | None = None) -> str:
    """The statement's text from the heading ``title`` to the next heading of any level."""
    text = STATEMENT.read_text() if text is None else text
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", text, flags=re.M | re.S)
    assert match, f"no section {title!r} in {STATEMENT}"
    return match.group(1)


def uids_in(text: str) -> list[str]:
    return re.findall(r"`(\d+(?:\.\d+)+)`", text)


def scu_pairs() -> set[tuple[str, str]]:
    """(SOP class, transfer syntax) rows of section 4.2.2's table."""
    rows = [line for line in section("4.2.2 Association initiation policy (Storage SCU: results)").splitlines()
            if line.startswith("| ") and line.endswith("| SCU |")]
    pairs = {tuple(uids_in(row)) for row in rows}
    assert pairs and all(len(p) == 2 for p in pairs), rows
    return pairs  # type: ignore[return-value]


def listed() -> tuple[list[str], list[str]]:
    classes = uids_in(section("A.1 SOP classes accepted by the Storage SCP (SCP role)"))
    syntaxes = uids_in(section("A.2 Transfer syntaxes accepted for each of them"))
    assert len(classes) == len(set(classes)) > 100 and len(syntaxes) == len(set(syntaxes)) > 10
    return classes, syntaxes


def chunks(items: list, size: int = MAX_CONTEXTS) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def negotiate(port: int, contexts: list) -> tuple[set[tuple[str, str]], str]:
    """Accepted (abstract syntax, transfer syntax) pairs, and the acceptor's implementation UID."""
    ae = AE(ae_title="CONFORMANCE")
    ae.requested_contexts = contexts
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINENODE")
    assert assoc.is_established
    try:
        accepted = {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in assoc.accepted_contexts}
        return accepted, str(assoc.acceptor.implementation_class_uid)
    finally:
        assoc.release()


@pytest.fixture
def port(node_factory: Callable) -> int:
    return int(node_factory().port)


def test_every_listed_sop_class_is_accepted(port: int) -> None:
    classes, _ = listed()
    for part in chunks(classes + [VERIFICATION]):
        accepted, implementation = negotiate(port, [build_context(uid, [EXPLICIT_LE]) for uid in part])
        assert accepted == {(uid, EXPLICIT_LE) for uid in part}
        assert f"`{implementation}`" in section("4.2 AE specification: SPINENODE")


def test_every_listed_transfer_syntax_is_accepted_and_no_other(port: int) -> None:
    _, syntaxes = listed()
    private = "1.2.826.0.1.3680043.9.9999.1"  # a transfer syntax nobody defined
    accepted, _ = negotiate(port, [build_context(MRImageStorage, [ts]) for ts in [*syntaxes, private]])
    assert accepted == {(str(MRImageStorage), ts) for ts in syntaxes}


def test_no_unlisted_sop_class_is_accepted(port: int) -> None:
    classes, _ = listed()
    registries = [getattr(sop_class, name) for name in dir(sop_class)
                  if name.startswith("_") and name.endswith("_CLASSES") and name != "_SERVICE_CLASSES"]
    known = {str(uid) for registry in registries if isinstance(registry, dict) for uid in registry.values()}
    unlisted = sorted(known - set(classes) - {VERIFICATION})
    assert len(unlisted) > 50  # query/retrieve, worklist, print, storage commitment ...
    for part in chunks(unlisted):  # with one listed class, so the association itself is accepted
        accepted, _ = negotiate(port, [build_context(uid, [EXPLICIT_LE]) for uid in [*part, str(MRImageStorage)]])
        assert accepted == {(str(MRImageStorage), EXPLICIT_LE)}


def test_the_appendix_is_what_the_script_prints() -> None:
    import subprocess
    import sys

    printed = subprocess.run([sys.executable, str(REPO / "scripts" / "conformance_tables.py")], capture_output=True,
                             text=True, check=True, cwd=REPO).stdout
    between = STATEMENT.read_text().split("<!-- tables:start -->\n", 1)[1].split("<!-- tables:end -->", 1)[0]
    assert between.strip() == printed.strip(), "run scripts/conformance_tables.py and paste its output"


def test_the_sections_ps3_2_asks_for_are_there() -> None:
    text = STATEMENT.read_text()
    for title in ("1. Overview", "3. Introduction", "4.1 Implementation model",
                  "4.2.1 Association acceptance policy (Storage SCP)", "4.3 Network interfaces", "4.4 Configuration",
                  "5. Media interchange", "6. Support of character sets", "7. Security",
                  "8.3 IHE Radiology AI Results (AIR): Evidence Creator checklist"):
        assert section(title, text).strip(), title


def test_every_test_the_air_checklist_cites_exists() -> None:
    checklist = section("8.3 IHE Radiology AI Results (AIR): Evidence Creator checklist")
    rows = [line for line in checklist.splitlines() if line.startswith("| ") and not line.startswith("| Requirement")
            and not line.startswith("| ---")]
    assert len(rows) >= 10
    sources = "\n".join(p.read_text() for p in (REPO / "tests").rglob("test_*.py"))
    for row in rows:
        status = row.split(" | ")[1]
        assert status.startswith(("met", "not met:", "not applicable:")), row
        for name in re.findall(r"`(test_\w+)`", row):
            assert f"def {name}(" in sources, name
        for path in re.findall(r"`(tests/[\w/]+\.py)`", row):
            assert (REPO / path).exists(), path
        if status.startswith("met"):
            assert "test_" in row, f"a met requirement names the test that proves it: {row}"


def test_the_statement_is_linked_from_the_readme() -> None:
    assert "docs/conformance.md" in (REPO / "README.md").read_text()


def scu_table_matches(outputs: list) -> None:
    """Used by tests/integration/test_output_conformance.py on the outputs it builds."""
    sent = {(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for ds in outputs}
    assert sent == scu_pairs()


def test_the_scu_table_is_what_the_sender_proposes(tmp_path: Path) -> None:
    from dicomnode.scu import _contexts  # noqa: PLC2701 - the sender's own proposal

    pairs = scu_pairs()
    contexts = _contexts([_header(sop, ts) for sop, ts in pairs])
    assert {(str(cx.abstract_syntax), str(cx.transfer_syntax[0])) for cx in contexts} == pairs
    assert all(len(cx.transfer_syntax) == 1 for cx in contexts)


def _header(sop: str, ts: str):  # noqa: ANN202
    from pydicom.dataset import Dataset, FileMetaDataset

    ds = Dataset()
    ds.SOPClassUID = sop
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ds
