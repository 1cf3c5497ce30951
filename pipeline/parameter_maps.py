"""CE parameter maps (the paper's section 4.1: inflow, outflow and peak).

Dynamic series (phase 1 pre-contrast, then post-contrast phases):

* **peak**: per voxel, the largest relative enhancement over the post-contrast phases,
  ``max_k (S_k - S_1) / S_1``;
* **inflow** (wash-in slope): peak enhancement divided by the time from phase 1 to the phase of
  the peak, per second;
* **outflow** (wash-out slope): change of relative enhancement from the peak phase to the last
  phase, per second (negative when the lesion washes out; 0 when the peak is the last phase).

Single-phase (post-contrast only) series: the peak map is the post-contrast signal relative to
normal marrow, and inflow and outflow are **absent**: they need a time course, and none is
invented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.volume import Volume

SINGLE_PHASE_NOTE = ("single-phase series: peak = post-contrast signal relative to normal marrow; "
                     "inflow and outflow need a dynamic series and are absent")


@dataclass(frozen=True)
class ParameterMaps:
    """Maps of shape (slices, rows, cols); ``inflow``/``outflow`` are None for single-phase."""

    peak: np.ndarray
    inflow: np.ndarray | None
    outflow: np.ndarray | None
    note: str

    @property
    def dynamic(self) -> bool:
        return self.inflow is not None

    def available(self) -> dict[str, np.ndarray]:
        maps = {"peak": self.peak}
        if self.inflow is not None and self.outflow is not None:
            maps |= {"inflow": self.inflow, "outflow": self.outflow}
        return maps


def _times(volume: Volume) -> np.ndarray:
    """Each phase's time in s from the headers when they give one per phase, strictly increasing
    (two phases at one time would divide an inflow by nothing), else the protocol's nominal 12 s."""
    times = np.asarray(volume.phase_times_s, dtype=np.float32)
    if len(times) == volume.phases and bool(np.all(np.diff(times) > 0)):
        return times
    return np.arange(volume.phases, dtype=np.float32) * 12.0  # the protocol's nominal 10-14 s


def with_marrow_reference(volume: Volume) -> tuple[np.ndarray, float, ParameterMaps]:
    """What training needs from a series, made as the node makes it: the post-contrast (or peak)
    image, normal marrow's level from region growing, and the maps relative to it."""
    from models.unet_io import segmentation_input
    from pipeline.region_growing import segment

    image = segmentation_input(volume.pixels)
    marrow = segment(image, volume.spacing[1:]).marrow_level
    return image, marrow, compute(volume, marrow)


def compute(volume: Volume, marrow_level: float) -> ParameterMaps:
    """Parameter maps of ``volume``; ``marrow_level`` is normal marrow's post-contrast signal."""
    pixels = volume.pixels.astype(np.float32)
    if volume.phases == 1:
        return ParameterMaps(pixels[0] / max(marrow_level, 1e-6), None, None, SINGLE_PHASE_NOTE)
    pre = pixels[0]
    floor = max(float(np.percentile(pre, 99)) * 0.02, 1e-3)  # air: avoid dividing by noise
    relative = (pixels[1:] - pre) / np.maximum(pre, floor)
    k_peak = relative.argmax(axis=0)  # 0 = phase 2
    peak = np.take_along_axis(relative, k_peak[None], axis=0)[0]
    t = _times(volume)
    t_peak = t[1:][k_peak]
    inflow = peak / np.maximum(t_peak - t[0], 1e-3)
    last = relative[-1]
    outflow = np.where(k_peak < relative.shape[0] - 1, (last - peak) / np.maximum(t[-1] - t_peak, 1e-3), 0.0)
    return ParameterMaps(peak, inflow.astype(np.float32), outflow.astype(np.float32),
                         f"dynamic series: {volume.phases} phases over {t[-1]:.0f} s")
