"""The abstention SR: a short TID 1500 report saying that a series was not analysed, and why,
with coded reasons (not free text only)."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from pipeline.outputs.identity import ResultIdentity
from pipeline.outputs.sr import INTENDED_USE, RESEARCH_ONLY, SCHEME, report_sr
from pipeline.reasons import Reason

ABSTENTION_SERIES_NUMBER = 9704
NOT_ANALYSED = Code("NOT_ANALYSED", SCHEME, "Series not analysed")
MEANINGS = {
    Reason.SLICE_COUNT: "Incomplete series: slice count",
    Reason.PHASE_COUNT: "Incomplete series: temporal phases",
    Reason.NO_CONTRAST: "No contrast agent",
    Reason.ORIENTATION: "Not an axial acquisition",
    Reason.GAP: "Gap between slices",
    Reason.UNEVEN_SPACING: "Uneven slice spacing",
    Reason.DUPLICATE_POSITION: "Duplicate slice position",
    Reason.INCONSISTENT_GEOMETRY: "Inconsistent geometry",
    Reason.MISSING_GEOMETRY: "Missing geometry",
    Reason.NO_LESION: "No lesion found",
    Reason.INPUT_OUT_OF_RANGE: "Input out of range",
    Reason.UNDECODABLE_PIXELS: "Pixel data could not be decoded",
    Reason.UNREADABLE_FILE: "Unreadable file",
    Reason.NOT_MR_IMAGE: "Not an MR image",
    Reason.NOT_VIBE_FAMILY: "Not a 3D gradient-echo (VIBE) series",
    Reason.EMPTY_SERIES: "Empty series",
    Reason.UNSUPPORTED_IMAGE: "Unsupported image type",
}  # a reason added later is coded as "Other reason", with its own code value


def reason_code(reason: Reason | str) -> Code:
    """The coded concept of ``reason``; ``ValueError`` if it is not a :class:`Reason`."""
    reason = Reason(reason)
    return Code(f"ABST_{reason.upper()}"[:16], SCHEME, MEANINGS.get(reason, "Other reason"))


def build_abstention_sr(source: Sequence[Dataset], reasons: Sequence[Reason | str], *,
                        identity: ResultIdentity) -> hd.sr.Comprehensive3DSR:
    """``source``: the series' datasets (``source[0]`` gives patient and study)."""
    evaluations = [hd.sr.QualitativeEvaluation(NOT_ANALYSED, reason_code(r)) for r in reasons]
    evaluations.append(hd.sr.QualitativeEvaluation(INTENDED_USE, RESEARCH_ONLY))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=identity.uid("abstention", "group"),
                                                     identifier="Not analysed"),
        qualitative_evaluations=evaluations)
    return report_sr([group], source, identity, kind="abstention", series_number=ABSTENTION_SERIES_NUMBER,
                     description="AI not analysed (NOT FOR DIAGNOSIS)", complete=True)
