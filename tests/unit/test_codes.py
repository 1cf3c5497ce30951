"""The private coding scheme's codes fit DICOM: a Code Value is an SH (at most 16 characters), a
Code Meaning an LO (64), and no two concepts share a value."""

from __future__ import annotations

from pydicom.sr.coding import Code

from pipeline.outputs import abstention, sr
from pipeline.outputs.abstention import reason_code
from pipeline.outputs.identity import PROCESSING_ALGORITHM
from pipeline.outputs.sr import INDETERMINATE_REASONS, SCHEME
from pipeline.reasons import Reason


def private_codes() -> list[Code]:
    found = [v for mod in (sr, abstention) for v in vars(mod).values() if isinstance(v, Code)]
    found += list(INDETERMINATE_REASONS.values()) + [reason_code(r) for r in Reason] + [PROCESSING_ALGORITHM]
    return [c for c in found if c.scheme_designator.startswith("99")]


def test_code_values_and_meanings_fit_their_value_representations() -> None:
    codes = private_codes()
    assert len(codes) > 30
    for code in codes:
        assert 0 < len(code.value) <= 16, code
        assert 0 < len(code.meaning) <= 64, code


def test_no_two_concepts_share_a_code_value() -> None:
    meanings: dict[str, set[str]] = {}
    for code in private_codes():
        if code.scheme_designator == SCHEME:
            meanings.setdefault(code.value, set()).add(code.meaning)
    assert all(len(m) == 1 for m in meanings.values()), {v: m for v, m in meanings.items() if len(m) > 1}


def test_every_reason_has_its_own_meaning() -> None:
    assert all(reason_code(r).meaning != "Other reason" for r in Reason if r is not Reason.OTHER)
