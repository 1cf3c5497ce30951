"""Locating the vertebral body automatically (the node has no person to draw a region).

**The spine localiser** (``pipeline.localiser``, a small network trained on domain-randomised
phantoms) gives each pixel a probability of vertebral body and of intervertebral disc. The largest
3D connected region of body or disc is the spinal column: its centroid is the body's centre, twice
the standard deviations of its pixels per slice (median over slices) its semi-axes (for a filled
ellipse, sigma = semi-axis / 2); the body's pixels in it, minus the dark cortex, are the per-slice
mask. It learned the body's shape and place among its neighbours (canal behind, psoas beside,
aorta in front), not one look's brightness.

**The template** below is the fallback when the localiser finds no column (an image unlike
anything it was trained on); the result says which method found the body.

On the slice average of the smoothed post-contrast image (normalised by the median of the
central region and clipped at 1.3 of it, so that bright vessels and kidneys cannot win on
brightness alone):

1. **Template matching** over every position and a range of sizes (semi-axes 16-26 x 11-20 mm,
   the specification's body range): bright marrow inside an ellipse, minus a dark cortical ring
   around it, minus the dark spinal canal (CSF) just behind it. Computed for all positions at once
   by FFT convolution.
2. **Symmetry**: the spine is the body's mirror axis (psoas, erector spinae, the posterior
   elements come in pairs), so the best template peaks are re-ranked by how well a spine-sized
   window around each correlates with its own left-right mirror. Erector spinae and psoas, which
   also look like bright ellipses with dark rims, are not mirror-symmetric about themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage, signal

from models.spine_io import BODY, DISC

SEMI_AXES_MM = ((16, 11), (19, 13), (22, 15), (25, 17), (19, 16), (24, 19))


@dataclass(frozen=True)
class BodyRegion:
    """The vertebral body: centre (row, col) and semi-axes (rows, cols) in pixels, a per-slice
    mask (slices, rows, cols), the score of the choice and the method that found it
    (``localiser`` or ``template``)."""

    centre: tuple[float, float]
    semi_axes: tuple[float, float]
    mask: np.ndarray
    score: float
    method: str = "template"
    localiser_sha256: str | None = None  # the localiser's weights, which ran in either case

    def ellipse(self, shape: tuple[int, int], grow_px: float = 0.0) -> np.ndarray:
        return ellipse_mask(shape, self.centre, self.semi_axes, grow_px)


def ellipse_mask(shape: tuple[int, int], centre: tuple[float, float], semi_axes: tuple[float, float],
                 grow_px: float = 0.0) -> np.ndarray:
    """A filled ellipse (centre and semi-axes as (row, col), pixels) on a (rows, cols) grid."""
    yy, xx = np.ogrid[0:shape[0], 0:shape[1]]
    b, a = semi_axes
    return ((yy - centre[0]) / (b + grow_px)) ** 2 + ((xx - centre[1]) / (a + grow_px)) ** 2 <= 1


def _kernels(a: float, b: float, canal: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised kernels (interior, ring, canal) centred on the body centre."""
    ry, rx = int(np.ceil(b + 2 * canal + 2)), int(np.ceil(1.6 * a + 2))
    yy, xx = np.mgrid[-ry:ry + 1, -rx:rx + 1]
    r = (yy / b) ** 2 + (xx / a) ** 2
    interior = (r <= 0.8).astype(np.float32)
    ring = ((r > 1.05) & (r <= 1.5)).astype(np.float32)
    canal_k = (((yy - (b + canal)) ** 2 + xx**2) <= (0.7 * canal) ** 2).astype(np.float32)
    return interior / interior.sum(), ring / ring.sum(), canal_k / canal_k.sum()


def _symmetry(img: np.ndarray, cy: float, cx: float, px: float) -> float:
    half_w = int(30 / px)
    y0, y1 = int(cy - 25 / px), int(cy + 55 / px)
    x0, x1 = int(round(cx)) - half_w, int(round(cx)) + half_w + 1
    if y0 < 0 or x0 < 0 or y1 > img.shape[0] or x1 > img.shape[1]:
        return 0.0
    window = img[y0:y1, x0:x1]
    if float(window.std()) < 1e-6:
        return 0.0  # featureless (air): no evidence of symmetry
    return float(np.nan_to_num(np.corrcoef(window.ravel(), window[:, ::-1].ravel())[0, 1]))


def in_plane_box(mask: np.ndarray, pad: int | tuple[int, int]) -> tuple[slice, slice, slice]:
    """All slices, and the rows and columns of the in-plane bounding box of ``mask`` (slices, rows,
    cols) or of a (rows, cols) mask, grown by ``pad`` pixels (one for both axes, or (rows, cols))
    and clipped; the whole image when empty."""
    pad_rows, pad_cols = (pad, pad) if isinstance(pad, int) else pad
    flat = np.asarray(np.any(mask, axis=0) if mask.ndim == 3 else mask, dtype=bool)
    rows, cols = np.flatnonzero(np.any(flat, axis=1)), np.flatnonzero(np.any(flat, axis=0))
    if len(rows) == 0:
        return slice(None), slice(0, flat.shape[0]), slice(0, flat.shape[1])
    return (slice(None), slice(max(int(rows[0]) - pad_rows, 0), min(int(rows[-1]) + pad_rows + 1, flat.shape[0])),
            slice(max(int(cols[0]) - pad_cols, 0), min(int(cols[-1]) + pad_cols + 1, flat.shape[1])))


def fill_holes_per_slice(mask: np.ndarray) -> np.ndarray:
    """``mask`` (slices, rows, cols) with the holes of each slice filled, computed in the mask's
    bounding box plus a pixel: the same as filling whole slices (a hole is background that does not
    reach the border, and the box's border ring is background connected to all that lies outside)."""
    box = in_plane_box(mask, pad=1)
    out = np.zeros_like(mask, dtype=bool)
    inner = out[box]
    for k, plane in enumerate(mask[box]):
        if plane.any():
            inner[k] = ndimage.binary_fill_holes(plane)
    return out


MIN_COLUMN_MM2 = 300.0  # a column smaller than a 20 mm disc in all slices together is no spine


def body_from_probabilities(prob: np.ndarray, smooth: np.ndarray, pixel_mm: tuple[float, float]
                            ) -> BodyRegion | None:
    """The body from the localiser's (slices, CLASSES, rows, cols) probabilities; None when no
    column of plausible size was found."""
    column = (prob[:, BODY] + prob[:, DISC]) >= 0.5
    labels, n = ndimage.label(column)
    if n == 0:
        return None
    sizes = ndimage.sum_labels(column, labels, index=np.arange(1, n + 1))
    largest = labels == 1 + int(np.argmax(sizes))
    if largest.sum() * pixel_mm[0] * pixel_mm[1] < MIN_COLUMN_MM2:
        return None
    pts = np.argwhere(largest)
    centre = (float(pts[:, 1].mean()), float(pts[:, 2].mean()))
    per_slice = (pts[pts[:, 0] == k, 1:] for k in np.unique(pts[:, 0]))
    spreads = [2 * rows_cols.std(axis=0) for rows_cols in per_slice if len(rows_cols) >= 10]
    semi = tuple(float(v) for v in np.median(spreads, axis=0)) if spreads else (5.0, 5.0)
    body = largest & (prob[:, BODY] >= prob[:, DISC])
    level = max(float(np.median(smooth[body])), 1e-6) if body.any() else 1e-6
    mask = fill_holes_per_slice(body & (smooth > 0.5 * level))
    score = float((prob[:, BODY] + prob[:, DISC])[largest].mean())
    return BodyRegion(centre, (semi[0], semi[1]), mask, score, method="localiser")


def smoothed(image: np.ndarray, pixel_mm: tuple[float, float]) -> np.ndarray:
    """``image`` (slices, rows, cols) smoothed in-plane (sigma 0.6 mm, at least half a pixel), so
    that a noise spike is neither a seed nor a level: what the body, marrow and growth are found on."""
    sigma = max(0.5, 0.6 / float(np.mean(pixel_mm)))
    return ndimage.gaussian_filter(image.astype(np.float32), (0, sigma, sigma))


def marrow_level(smooth: np.ndarray, body: np.ndarray) -> float:
    """Normal marrow's signal: the 40th percentile of the smoothed image in the body mask (a lesion
    is brighter than marrow, so a low percentile stays on the marrow around it); the volume's
    median when no body was found. The reference of every enhancement ratio, and of the U-Net's
    input (:func:`models.unet_io.scale_by_marrow`)."""
    return float(np.percentile(smooth[body], 40)) if body.any() else float(np.median(smooth))


def normal_marrow(image: np.ndarray, pixel_mm: tuple[float, float]) -> float:
    """:func:`marrow_level` in the body :func:`locate_body` finds in ``image`` (what region growing
    measures; for callers that do not grow regions, such as the U-Net's training data)."""
    smooth = smoothed(image, pixel_mm)
    return marrow_level(smooth, locate_body(image, smooth, pixel_mm).mask)


def locate_body(image: np.ndarray, smooth: np.ndarray, pixel_mm: tuple[float, float]) -> BodyRegion:
    """``image``: (slices, rows, cols) post-contrast image, ``smooth`` the same smoothed: the
    localiser's body, or the template's when the localiser finds none."""
    from pipeline.localiser import get_localiser

    localiser = get_localiser()
    found = body_from_probabilities(localiser.probabilities(image, pixel_mm), smooth, pixel_mm)
    body = found if found is not None else locate_body_template(smooth, pixel_mm)
    return replace(body, localiser_sha256=localiser.sha256)


def locate_body_template(smooth: np.ndarray, pixel_mm: tuple[float, float]) -> BodyRegion:
    """``smooth``: (slices, rows, cols) smoothed post-contrast image."""
    mean = smooth.mean(axis=0)
    rows, cols = mean.shape
    px = float(np.mean(pixel_mm))
    yy, xx = np.mgrid[0:rows, 0:cols]
    centre_dist = np.hypot(yy - rows / 2, xx - cols / 2) * px
    level = max(float(np.median(mean[centre_dist < 60])), 1e-6)
    # clipped: enhancing vessels and kidneys must not out-score marrow by brightness alone
    norm = np.minimum(mean / level, 1.3).astype(np.float32)
    allowed = (np.abs(yy - rows / 2) * px <= 25) & (np.abs(xx - cols / 2) * px <= 25)
    peaks: list[tuple[float, int, int, float, float]] = []
    for a_mm, b_mm in SEMI_AXES_MM:
        a, b = a_mm / px, b_mm / px
        k_in, k_ring, k_canal = _kernels(a, b, 8.0 / px)
        score = (signal.fftconvolve(norm, k_in[::-1, ::-1], mode="same")
                 - signal.fftconvolve(norm, k_ring[::-1, ::-1], mode="same")
                 - 0.7 * signal.fftconvolve(norm, k_canal[::-1, ::-1], mode="same"))
        score[~allowed] = -np.inf
        local_max = (score == ndimage.maximum_filter(score, size=int(8 / px) | 1)) & allowed
        for y, x in np.argwhere(local_max):
            peaks.append((float(score[y, x]), int(y), int(x), b, a))
    peaks.sort(reverse=True)
    best = None
    for tmpl, y, x, b, a in peaks[:25]:
        total = tmpl + 2.5 * max(_symmetry(norm, y, x, px), 0.0)
        if best is None or total > best[0]:
            best = (total, y, x, b, a)
    assert best is not None
    total, y, x, b, a = best
    ellipse = ellipse_mask((rows, cols), (float(y), float(x)), (b, a), grow_px=2.0 / px)
    mask = fill_holes_per_slice(ellipse[None] & (smooth > 0.5 * level))
    return BodyRegion((float(y), float(x)), (b, a), mask, float(total))
