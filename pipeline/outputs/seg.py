"""The DICOM Segmentation: one segment per method (U-Net, region growing), frames on the source
slices (empty frames kept, so frame k is slice k of the referenced phase)."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from pipeline.outputs.colours import RG_RGB, UNET_RGB
from pipeline.outputs.identity import MANUFACTURER, MODEL_NAME, ResultIdentity, package_version

SEG_SERIES_NUMBER = 9701


# The key image's outline colours (red U-Net, blue region growing), so every viewer shows the
# two methods alike: Recommended Display CIELab Value of each segment.
UNET_COLOUR = hd.color.CIELabColor.from_rgb(*UNET_RGB)
RG_COLOUR = hd.color.CIELabColor.from_rgb(*RG_RGB)


def _segment(number: int, label: str, algorithm: hd.AlgorithmIdentificationSequence,
             colour: hd.color.CIELabColor) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[codes.SCT.BoneStructureOfSpine],
        display_color=colour,
    )


def segment_numbers(*, unet_ran: bool) -> dict[str, int]:
    """The segment number of each method's mask in :func:`build_seg`'s SEG, keyed by method
    (``"unet"``, ``"region_growing"``, the values of ``pipeline.analysis.LesionSource``): the
    U-Net's segment, when it ran, comes first."""
    methods = (["unet"] if unet_ran else []) + ["region_growing"]
    return {method: number for number, method in enumerate(methods, start=1)}


def build_seg(source: Sequence[Dataset], *, unet_mask: np.ndarray | None, rg_mask: np.ndarray,
              identity: ResultIdentity) -> hd.seg.Segmentation:
    """``source``: the referenced phase's datasets in slice order; masks (slices, rows, cols)."""
    numbers = segment_numbers(unet_ran=unet_mask is not None)
    segments: list[hd.seg.SegmentDescription] = []
    arrays: list[np.ndarray] = []
    if unet_mask is not None:
        algo = hd.AlgorithmIdentificationSequence(
            name="spinenode improved U-Net", version=(identity.unet_sha256 or "unknown")[:16],
            family=codes.cid7162.ArtificialIntelligence)
        segments.append(_segment(numbers["unet"], "Lesion (U-Net)", algo, UNET_COLOUR))
        arrays.append(unet_mask)
    algo = hd.AlgorithmIdentificationSequence(
        name="spinenode region growing", version=package_version(),
        family=codes.cid7162.NeighborhoodAnalysis)
    segments.append(_segment(numbers["region_growing"], "Lesion (region growing)", algo, RG_COLOUR))
    arrays.append(rg_mask)
    pixels = np.stack(arrays, axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=list(source),
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=identity.uid("seg", "series"),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=identity.uid("seg", "instance"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=list(identity.software_versions),  # type: ignore[arg-type]
        device_serial_number=package_version(),
        omit_empty_frames=False,
        series_description="AI lesion segmentation (NOT FOR DIAGNOSIS)",
        content_description="Spinal lesion segmentation, U-Net and region growing",
        content_label="SPINE_LESION",
    )
    seg.ContentCreatorName = ""  # type 2 (Content Identification): present, empty for a device-made object
    identity.add_algorithms(seg)
    identity.pin(seg, "seg", source[0])
    return seg
