"""Why a series is not analysed: one closed set of coded reasons.

The protocol rule's refusals (the node's assembler), the series it ignores, and the pipeline's
own refusals (:class:`pipeline.errors.InputRejected`) all use these codes; the abstention SR
codes each one (``pipeline.outputs.abstention``) and the node stores them as a list. Parse a
value where it enters (``Reason(text)`` raises ``ValueError`` for anything else).
"""

from __future__ import annotations

import enum


class Reason(enum.StrEnum):
    # the protocol rule: a wanted series that stayed incomplete or irregular
    SLICE_COUNT = "slice_count"
    PHASE_COUNT = "phase_count"
    NO_CONTRAST = "no_contrast"
    ORIENTATION = "orientation"
    GAP = "gap"
    UNEVEN_SPACING = "uneven_spacing"
    DUPLICATE_POSITION = "duplicate_position"
    INCONSISTENT_GEOMETRY = "inconsistent_geometry"
    # the protocol rule: not a series this node analyses (recorded, no abstention SR)
    NOT_MR_IMAGE = "not_mr_image"
    NOT_VIBE_FAMILY = "not_vibe_family"
    # the pipeline: input it will not analyse
    EMPTY_SERIES = "empty_series"
    UNREADABLE_FILE = "unreadable_file"
    UNSUPPORTED_IMAGE = "unsupported_image"
    UNDECODABLE_PIXELS = "undecodable_pixels"
    MISSING_GEOMETRY = "missing_geometry"
    INPUT_OUT_OF_RANGE = "input_out_of_range"
    NO_LESION = "no_lesion"
    # an abstention whose reasons were not recorded
    OTHER = "other"


def parse_reasons(values: object) -> tuple[Reason, ...]:
    """A list of reason codes (as stored or given) as a tuple of :class:`Reason`.

    Raises ``ValueError`` naming the value when one is not a known code, ``TypeError`` when
    ``values`` is not a list or tuple of them.
    """
    if not isinstance(values, list | tuple):
        raise TypeError(f"reasons must be a list of codes, got {type(values).__name__}")
    try:
        return tuple(Reason(v) for v in values)
    except ValueError as exc:
        raise ValueError(f"{exc}; accepted: {', '.join(Reason)}") from None
