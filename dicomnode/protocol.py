"""The protocol rule: which series this node analyses, and when such a series is complete.

Pure functions over header summaries, so every variant is unit-tested without a network or a
database. A series is, in order of the checks:

1. **ignored** if it is not what the node analyses at all: not MR, not an image with geometry,
   or not of the 3D gradient-echo / VIBE family (by MRAcquisitionType + ScanningSequence,
   SequenceName or the description patterns). A sagittal T2 lands here. Recorded, never
   processed.
2. **pending** while it is a wanted VIBE series that does not meet the rule yet; the reasons are
   kept. If it stays pending past the quiet period it is **abstained** with those reasons:
   ``orientation`` (slice normal more than ``max_axial_angle_deg`` from the patient z-axis),
   ``no_contrast``, ``slice_count``, ``phase_count``, ``duplicate_position``, ``gap``,
   ``uneven_spacing``, ``inconsistent_geometry``, ``missing_geometry``.
3. **complete** as soon as it meets the rule: post-contrast, axial (oblique axial counts),
   exactly ``slices_per_phase`` slices in every temporal phase, the same evenly spaced,
   contiguous positions in each phase and no duplicates.
"""

from __future__ import annotations

import enum
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dicomnode.config import ProtocolConfig

MR_IMAGE_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR Image Storage
})


class Outcome(enum.StrEnum):
    COMPLETE = "complete"
    PENDING = "pending"
    IGNORED = "ignored"


@dataclass(frozen=True, kw_only=True)
class SliceInfo:
    """The geometry of one received instance."""

    position: Sequence[float] | None
    orientation: Sequence[float] | None
    pixel_spacing: Sequence[float] | None = None
    slice_thickness: float | None = None
    temporal_position: int | None = None
    rows: int | None = None
    columns: int | None = None


@dataclass(frozen=True, kw_only=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[str, ...] = ()
    detail: str = ""
    phases: int = 0

    @property
    def reason(self) -> str:
        return self.reasons[0] if self.reasons else ""


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)


def _matches(patterns: Iterable[str], text: str) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in patterns)


def is_vibe_family(attrs: Mapping[str, Any], cfg: ProtocolConfig) -> bool:
    acq = _text(attrs.get("MRAcquisitionType")).upper()
    scanning = _text(attrs.get("ScanningSequence")).upper()
    if acq == "3D" and "GR" in scanning.split("\\"):
        return True
    if _matches(cfg.vibe_sequence_name_patterns, _text(attrs.get("SequenceName"))) and "GR" in scanning:
        return True
    return _matches(cfg.vibe_description_patterns, _text(attrs.get("SeriesDescription")))


def is_post_contrast(attrs: Mapping[str, Any], cfg: ProtocolConfig) -> bool:
    if _text(attrs.get("ContrastBolusAgent")).strip():
        return True
    return _matches(cfg.contrast_description_patterns, _text(attrs.get("SeriesDescription")))


def slice_normal(orientation: Sequence[float]) -> tuple[float, float, float] | None:
    r = orientation[:3]
    c = orientation[3:6]
    n = (r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0])
    norm = math.sqrt(sum(v * v for v in n))
    if norm < 1e-6:
        return None
    return (n[0] / norm, n[1] / norm, n[2] / norm)


def axial_angle_deg(orientation: Sequence[float]) -> float | None:
    """Angle between the slice normal and the patient z-axis (0 for a true axial slice)."""
    n = slice_normal(orientation)
    if n is None:
        return None
    return math.degrees(math.acos(min(1.0, abs(n[2]))))


@dataclass
class _Findings:
    """Reasons (in order, repeats allowed) and their details, collected across the checks."""

    reasons: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)

    def add(self, reason: str, detail: str) -> None:
        self.reasons.append(reason)
        self.details.append(detail)


def _differs(a: Sequence[float], b: Sequence[float]) -> bool:
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) > 1e-3


def _same_frame(s: SliceInfo, ref: SliceInfo) -> bool:
    """Same orientation, matrix and pixel spacing as the reference slice: one acquisition."""
    assert s.orientation is not None and ref.orientation is not None
    return not (_differs(s.orientation, ref.orientation) or s.rows != ref.rows or s.columns != ref.columns
                or bool(s.pixel_spacing and ref.pixel_spacing and _differs(s.pixel_spacing, ref.pixel_spacing)))


def _phase_distances(slices: Sequence[SliceInfo], normal: Sequence[float]) -> dict[int, list[float]]:
    """Each slice's distance along the normal, per temporal phase (1 when the header has none)."""
    phases: dict[int, list[float]] = defaultdict(list)
    for s in slices:
        assert s.position is not None
        phases[s.temporal_position or 1].append(sum(p * n for p, n in zip(s.position, normal, strict=True)))
    return phases


def _check_phase_count(found: _Findings, phases: Mapping[int, list[float]], n_phases: int) -> None:
    if len(phases) != n_phases or set(phases) != set(range(1, n_phases + 1)):
        found.add("phase_count", f"{len(phases)} of {n_phases} temporal phases present")


def _check_phase_spacing(found: _Findings, phase: int, dists: list[float], cfg: ProtocolConfig,
                         thickness: float | None) -> None:
    """One phase: the expected slice count, no duplicates, even and contiguous spacing."""
    dists.sort()
    want = cfg.slices_per_phase
    if len(dists) != want:
        found.add("slice_count", f"phase {phase}: {len(dists)} of {want} slices")
        return
    steps = [b - a for a, b in zip(dists, dists[1:], strict=False)]
    if any(abs(s) < 1e-3 for s in steps):
        found.add("duplicate_position", f"phase {phase}: two slices at the same position")
        return
    median = sorted(steps)[len(steps) // 2] if steps else 0.0
    if steps and max(steps) > 1.5 * median:
        found.add("gap", f"phase {phase}: a gap of {max(steps):.2f} mm (spacing {median:.2f} mm)")
    elif steps and max(abs(s - median) for s in steps) > cfg.spacing_tolerance * median:
        found.add("uneven_spacing", f"phase {phase}: spacing varies around {median:.2f} mm")
    if thickness and median > thickness * 1.5:
        found.add("gap", f"spacing {median:.2f} mm against slice thickness {thickness:.2f} mm")


def _check_phases_aligned(found: _Findings, phases: Mapping[int, list[float]], want: int) -> None:
    """Every phase at the positions of phase 1; only asked while nothing else is wrong."""
    first = sorted(phases.get(1, []))
    for phase, dists in phases.items():
        if phase != 1 and len(dists) == len(first) == want and not found.reasons and max(
                abs(a - b) for a, b in zip(sorted(dists), first, strict=True)) > 0.1:
            found.add("inconsistent_geometry", f"phase {phase} is not at the positions of phase 1")


def _geometry_reasons(
    slices: Sequence[SliceInfo], cfg: ProtocolConfig, expected_phases: int
) -> tuple[list[str], str, int]:
    """Reasons the slices do not (yet) form a complete series; empty when they do."""
    if any(s.position is None or s.orientation is None for s in slices):
        return ["missing_geometry"], "an instance lacks ImagePositionPatient/Orientation", 0
    ref = slices[0]
    assert ref.orientation is not None
    if not all(_same_frame(s, ref) for s in slices):
        return ["inconsistent_geometry"], "orientation, matrix or pixel spacing differ", 0
    normal = slice_normal(ref.orientation)
    if normal is None:
        return ["inconsistent_geometry"], "row and column cosines are parallel", 0
    phases = _phase_distances(slices, normal)
    n_phases = max(expected_phases, len(phases))
    found = _Findings()
    _check_phase_count(found, phases, n_phases)
    for phase, dists in sorted(phases.items()):
        _check_phase_spacing(found, phase, dists, cfg, ref.slice_thickness)
    _check_phases_aligned(found, phases, cfg.slices_per_phase)
    return list(dict.fromkeys(found.reasons)), "; ".join(found.details), n_phases


def evaluate(
    attrs: Mapping[str, Any], sop_classes: Iterable[str], slices: Sequence[SliceInfo], cfg: ProtocolConfig
) -> Verdict:
    """Apply the protocol rule to a series' headers as received so far."""
    modality = _text(attrs.get("Modality")).upper()
    classes = set(sop_classes)
    if modality != "MR" or not classes or not classes <= MR_IMAGE_CLASSES:
        return Verdict(outcome=Outcome.IGNORED, reasons=("not_mr_image",),
                       detail=f"modality {modality or 'absent'}, {len(classes)} SOP class(es)")
    if not is_vibe_family(attrs, cfg):
        return Verdict(outcome=Outcome.IGNORED, reasons=("not_vibe_family",),
                       detail="not a 3D gradient-echo (VIBE-family) acquisition")
    reasons: list[str] = []
    details: list[str] = []
    angle = next((axial_angle_deg(s.orientation) for s in slices if s.orientation), None)
    if angle is None or angle > cfg.max_axial_angle_deg:
        reasons.append("orientation")
        details.append("orientation unknown" if angle is None else f"slice normal {angle:.1f} deg from axial")
    if not is_post_contrast(attrs, cfg):
        reasons.append("no_contrast")
        details.append("no ContrastBolusAgent and no contrast pattern in the description")
    try:
        expected = int(attrs.get("NumberOfTemporalPositions") or 1)
    except (TypeError, ValueError):
        expected = 1
    geo_reasons, geo_detail, phases = _geometry_reasons(slices, cfg, expected)
    reasons += geo_reasons
    if geo_detail:
        details.append(geo_detail)
    if reasons:
        return Verdict(outcome=Outcome.PENDING, reasons=tuple(reasons), detail="; ".join(details))
    return Verdict(outcome=Outcome.COMPLETE, phases=phases,
                   detail=f"{phases} phase(s) x {cfg.slices_per_phase} slices")
