"""Pin the values highdicom fills from the clock or a random generator.

Outputs must be byte-for-byte reproducible from their inputs (the phantom is seeded; the node's
results use deterministic UIDs so a re-send never duplicates). highdicom stamps creation dates
and times, contribution date-times and a random DimensionOrganizationUID; this module replaces
them with values derived from the caller's inputs.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from pipeline.uids import derived_uid

_DATES = ("ContentDate", "SeriesDate", "InstanceCreationDate", "DateOfSecondaryCapture")
_TIMES = ("ContentTime", "SeriesTime", "InstanceCreationTime", "TimeOfSecondaryCapture")


def pin_generated_values(ds: Dataset, *, uid_parts: tuple[object, ...], date: str, time: str) -> None:
    """Overwrite clock- and random-derived attributes of ``ds`` in place.

    ``date`` is a DA (YYYYMMDD) and ``time`` a TM (HHMMSS[.f]) value; ``uid_parts`` seed the
    dimension organization UID.
    """
    for attr in _DATES:
        if attr in ds:
            setattr(ds, attr, date)
    for attr in _TIMES:
        if attr in ds:
            setattr(ds, attr, time)
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time.split(".")[0]
    dim_uid = derived_uid("dimension-organization", *uid_parts)
    for seq in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in ds.get(seq, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = dim_uid
