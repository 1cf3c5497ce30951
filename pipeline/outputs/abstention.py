"""The abstention SR: a short TID 1500 report saying that a series was not analysed, and why,
with coded reasons (not free text only)."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from pipeline.outputs.identity import ResultIdentity
from pipeline.outputs.sr import INTENDED_USE, RESEARCH_ONLY, SCHEME, report_sr

ABSTENTION_SERIES_NUMBER = 9704
NOT_ANALYSED = Code("NOT_ANALYSED", SCHEME, "Series not analysed")
REASONS = {
    "slice_count": "Incomplete series: slice count",
    "phase_count": "Incomplete series: temporal phases",
    "no_contrast": "No contrast agent",
    "orientation": "Not an axial acquisition",
    "gap": "Gap between slices",
    "uneven_spacing": "Uneven slice spacing",
    "duplicate_position": "Duplicate slice position",
    "inconsistent_geometry": "Inconsistent geometry",
    "missing_geometry": "Missing geometry",
    "no_lesion": "No lesion found",
    "input_out_of_range": "Input out of range",
    "undecodable_pixels": "Pixel data could not be decoded",
    "unreadable_file": "Unreadable file",
}


def reason_code(reason: str) -> Code:
    meaning = REASONS.get(reason, "Other reason")
    return Code(f"ABST_{reason.upper()}"[:16], SCHEME, meaning)


def build_abstention_sr(source: Sequence[Dataset], reasons: Sequence[str], *,
                        identity: ResultIdentity) -> hd.sr.Comprehensive3DSR:
    evaluations = [hd.sr.QualitativeEvaluation(NOT_ANALYSED, reason_code(r)) for r in reasons]
    evaluations.append(hd.sr.QualitativeEvaluation(INTENDED_USE, RESEARCH_ONLY))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=identity.uid("abstention", "group"),
                                                     identifier="Not analysed"),
        qualitative_evaluations=evaluations)
    return report_sr([group], source, identity, kind="abstention", series_number=ABSTENTION_SERIES_NUMBER,
                     description="AI not analysed (NOT FOR DIAGNOSIS)", complete=True)
