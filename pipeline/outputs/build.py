"""From an analysis (or an abstention) to the datasets sent to PACS."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from pipeline.analysis import Analysis
from pipeline.outputs.abstention import build_abstention_sr
from pipeline.outputs.identity import ResultIdentity
from pipeline.outputs.key_image import build_key_image
from pipeline.outputs.seg import build_seg
from pipeline.outputs.sr import build_measurement_sr


def reference_phase(phases: int) -> int:
    """The phase the SEG references: the only one, or the first post-contrast phase."""
    return 0 if phases == 1 else 1


def source_headers(paths: Sequence[Path], analysis: Analysis) -> list[Dataset]:
    """Headers of the referenced phase's instances, in the volume's slice order."""
    uids = analysis.volume.sop_instance_uids[reference_phase(analysis.volume.phases)]
    by_uid = {}
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        by_uid[str(ds.SOPInstanceUID)] = ds
    return [by_uid[u] for u in uids]


def summary_line(analysis: Analysis) -> str:
    largest = analysis.lesions[0]
    return (f"{len(analysis.lesions)} lesion(s); largest {largest.volume_mm3 / 1000:.2f} mL, "
            f"{largest.max_diameter_mm:.0f} mm, peak enhancement x{largest.peak_enhancement:.1f} marrow")


def headline(analysis: Analysis) -> str:
    """The study-level AI class for the key image's top band ("" when the classifier is off)."""
    cls = analysis.classification
    if cls is None:
        return ""
    return f"AI: {cls.label}, P(metastasis) {cls.probability_metastasis:.2f}"


def build_results(analysis: Analysis, source: Sequence[Dataset]) -> list[Dataset]:
    """SEG, TID 1500 SR and key image for a completed analysis."""
    cls = analysis.classification
    identity = ResultIdentity(source_series_uid=analysis.volume.series_uid, unet_sha256=analysis.unet_sha256,
                              classifier_sha256=None if cls is None else cls.sha256)
    seg = build_seg(source, unet_mask=analysis.unet_mask, rg_mask=analysis.region_growing.mask, identity=identity)
    sr = build_measurement_sr(source, seg, analysis.lesions, lesion_segment=1,
                              agreement_dice=analysis.agreement_dice, identity=identity,
                              radiomics=analysis.radiomics, classification=cls)
    k = analysis.lesions[0].largest_slice
    key = build_key_image(source[k], analysis.image[k],
                          None if analysis.unet_mask is None else analysis.unet_mask[k],
                          analysis.region_growing.mask[k], summary_line(analysis), identity=identity,
                          headline=headline(analysis))
    return [seg, sr, key]


def build_abstention(source: Sequence[Dataset], reasons: Sequence[str], series_uid: str) -> Dataset:
    return build_abstention_sr(source, reasons, identity=ResultIdentity(source_series_uid=series_uid))
