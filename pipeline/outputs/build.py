"""From an analysis (or an abstention) to the datasets sent to PACS.

The builders take in-memory datasets, as highdicom's constructors do: the headers the volume
kept when the series was loaded, or the series' datasets for an abstention. They read no file.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

from pipeline.analysis import Analysis
from pipeline.outputs.abstention import build_abstention_sr
from pipeline.outputs.identity import ResultIdentity
from pipeline.outputs.key_image import build_key_image
from pipeline.outputs.seg import build_seg, segment_numbers
from pipeline.outputs.sr import build_measurement_sr
from pipeline.reasons import Reason
from pipeline.volume import Volume


def reference_phase(phases: int) -> int:
    """The phase the SEG references: the only one, or the first post-contrast phase."""
    return 0 if phases == 1 else 1


def source_headers(volume: Volume) -> list[Dataset]:
    """Headers of the referenced phase's instances, in the volume's slice order.

    Raises ``ValueError`` for a volume without headers (one not made by ``load_series``).
    """
    if len(volume.headers) != volume.phases:
        raise ValueError("the volume kept no DICOM headers: load the series with pipeline.load_series")
    return list(volume.headers[reference_phase(volume.phases)])


def summary_line(analysis: Analysis) -> str:
    largest = analysis.lesions[0]
    return (f"{len(analysis.lesions)} lesion(s); largest {largest.volume_mm3 / 1000:.2f} mL, "
            f"{largest.max_diameter_mm:.0f} mm, peak enhancement x{largest.peak_enhancement:.1f} marrow")


def headline(analysis: Analysis) -> str:
    """The study-level AI class for the key image's top band ("" when the classifier is off)."""
    cls, verdict = analysis.classification, analysis.verdict
    if cls is None:
        return ""
    if verdict is not None and verdict.indeterminate:
        reasons = ", ".join(str(r).replace("_", " ") for r in verdict.reasons)
        return f"AI: indeterminate ({reasons}), P(metastasis) {cls.probability_metastasis:.2f}"
    return f"AI: {cls.label}, P(metastasis) {cls.probability_metastasis:.2f}"


def build_results(analysis: Analysis) -> list[Dataset]:
    """SEG, TID 1500 SR and key image for a completed analysis, on the headers its volume kept."""
    source = source_headers(analysis.volume)
    cls = analysis.classification
    identity = ResultIdentity(source_series_uid=analysis.volume.series_uid, unet_sha256=analysis.unet_sha256,
                              classifier_sha256=None if cls is None else cls.sha256,
                              localiser_sha256=analysis.region_growing.body.localiser_sha256,
                              radiomics_sha256=None if analysis.radiomics is None else analysis.radiomics["sha256"],
                              analysed=True)
    seg = build_seg(source, unet_mask=analysis.unet_mask, rg_mask=analysis.region_growing.mask, identity=identity)
    lesion_segment = segment_numbers(unet_ran=analysis.unet_mask is not None)[analysis.lesion_source]
    sr = build_measurement_sr(source, seg, analysis.lesions, lesion_segment=lesion_segment,
                              agreement_dice=analysis.agreement_dice,
                              agreement_overlap=analysis.agreement_overlap, identity=identity,
                              radiomics=analysis.radiomics, classification=cls,
                              verdict=analysis.verdict)
    k = analysis.lesions[0].largest_slice
    key = build_key_image(source[k], analysis.image[k],
                          None if analysis.unet_mask is None else analysis.unet_mask[k],
                          analysis.region_growing.mask[k], summary_line(analysis), identity=identity,
                          headline=headline(analysis))
    return [seg, sr, key]


def build_abstention(series: Sequence[Dataset], reasons: Sequence[Reason | str]) -> Dataset:
    """The abstention SR for a series not analysed: ``series`` are its datasets (headers are
    enough, in any order: the evidence is listed by InstanceNumber), ``reasons`` the coded reasons.

    Raises ``ValueError`` when ``series`` is empty or a reason is not a :class:`Reason`.
    """
    if not series:
        raise ValueError("an abstention SR needs at least one dataset of the series")
    source = sorted(series, key=lambda ds: int(ds.get("InstanceNumber", 0) or 0))
    identity = ResultIdentity(source_series_uid=str(source[0].SeriesInstanceUID))
    return build_abstention_sr(source, reasons, identity=identity)
