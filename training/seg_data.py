"""Training data for the U-Net: preparing slices at network size, and a site's labelled folders
(phantom studies of either look come from ``training.looks``).

A site's folder holds DICOM series and DICOM Segmentations that reference them (the layout of
``spinenode synth`` works, as does any tree: SEG files are found by SOP class and matched to
their source series by the referenced SOP Instance UIDs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import torch

from models.unet_io import mask_to_network, scale_by_marrow, segmentation_input, to_network
from pipeline.anatomy import normal_marrow
from pipeline.volume import Volume, load_series

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass
class SliceSet:
    """Prepared slices at network size: images float16 (N, S, S), masks uint8 (N, S, S)."""

    images: torch.Tensor
    masks: torch.Tensor

    @classmethod
    def concat(cls, parts: list[SliceSet]) -> SliceSet:
        return cls(torch.cat([p.images for p in parts]), torch.cat([p.masks for p in parts]))


def prepare(pixels: np.ndarray, mask: np.ndarray, pixel_mm: tuple[float, float]) -> SliceSet:
    """One study at network size, scaled by the normal marrow the node would measure in it (the
    spine localiser's body: its estimate, errors included, is what the network gets in the node)."""
    image = segmentation_input(pixels).astype(np.float32)
    scaled = scale_by_marrow(image, normal_marrow(image, pixel_mm))
    return SliceSet(to_network(scaled)[:, 0].half(), mask_to_network(mask))


def labelled_folder(root: Path) -> Iterator[tuple[str, Volume, np.ndarray]]:
    """(name, volume, mask) for each SEG under ``root`` whose source series is also there."""
    by_series: dict[str, list[Path]] = defaultdict(list)
    segs: list[Path] = []
    for path in sorted(Path(root).rglob("*")):
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM: skip
            continue
        if ds.get("SOPClassUID") == SEG_SOP_CLASS:
            segs.append(path)
        elif "SeriesInstanceUID" in ds:
            by_series[str(ds.SeriesInstanceUID)].append(path)
    for seg_path in segs:
        seg = hd.seg.segread(seg_path)
        refs = seg.get_source_image_uids()
        series_uid = str(refs[0][1])
        if series_uid not in by_series:
            continue
        volume = load_series(by_series[series_uid])
        referenced = {str(r[2]) for r in refs}
        phase = next(i for i, uids in enumerate(volume.sop_instance_uids) if referenced & set(uids))
        mask = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(volume.sop_instance_uids[phase]),
            ignore_spatial_locations=True, assert_missing_frames_are_empty=True,
            combine_segments=True, skip_overlap_checks=True,
        ) > 0
        yield seg_path.parent.name, volume, mask
