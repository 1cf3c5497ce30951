"""The paper's region growing (section 2.3, Fig. 1), made automatic.

The paper's reader outlines the abnormal region on the sagittal view; that outline, moved to
the axial slices, is the initial region. The node has no reader, so:

A. **Initial region**: the vertebral body, found automatically (``pipeline.anatomy``: the spine
   localiser, or a template when it finds nothing).
B. **Expansion x5** (Fig. 1D): the body ellipse scaled so that its area is five times larger.
C. **Partitions** (Fig. 1D-E): each slice of the expanded region is cut into partitions by a
   watershed of the gradient magnitude from a regular grid of markers (about every 5 mm); the
   partitions that overlap the initial region by at least half are kept.
D. **3D fusion** (Fig. 1F): the kept partitions of all slices and the body form one 3D candidate
   region: where a lesion of the body may lie, its edge a few millimetres past the cortex.
E. **Seed** (Fig. 1G): the voxel of highest enhancement (on the smoothed image, so that a noise
   spike is not chosen) at least 3 mm (rounded to pixels) inside the body's edge, anywhere in the
   body when no slice of it is that thick: the cortex and the vessels and muscles around the body
   may be brighter than marrow (on some scanners brighter than the lesion) and must not become
   seeds. (The paper takes it in the candidate region, which holds the body.)
F. **Growing**: 3D connected growth from the seed over voxels brighter than halfway between
   normal marrow (the body's 40th percentile) and the lesion's level, within 6 mm of the body
   (primary tumours break out of it, but the muscles around the spine enhance as much as a weak
   tumour, so unlimited growth leaks into them). The lesion's level is first the seed's, then the
   median of what was grown (up to three rounds): a seed is a lesion's brightest voxel, and a
   threshold halfway to it cuts rim-enhancing or textured lesions in half; the last region that did
   not flood is kept. A region that floods more than 60 % of the body is grown again confined to
   the candidate region (a bright cortex or a bright neighbour joined it), then from a threshold
   closer to the seed (65 %, then 80 % of the way); no threshold is above the seed's own value.
   A grown region less than half inside the body is dropped (a lesion lies inside or arises
   from the vertebral body). Holes inside a grown slice are
   filled (non-enhancing cores enclosed by an enhancing rim belong to the lesion).
G. **Further lesions**: the next brightest voxel outside what was grown becomes a new seed while
   it is still clearly enhancing (at least 1.3 x marrow and halfway to the first lesion's
   level), up to five lesions. A seed whose region was dropped (a bright cortex, endplate or
   vessel: images where bone or vessels outshine the lesion) does not set that level; up to 15
   seeds are tried.
H. **Dynamic series**: seeds and growth (steps C-G) run on the enhancement, the peak over the
   post-contrast phases minus the pre-contrast phase, instead of the peak image. Cortex, disc, CSF
   and suppressed fat take up no contrast and drop out of it, so a bone or disc brighter than the
   lesion (the randomised look's wild contrasts; some scanners) no longer takes the seed. The body
   is still found on the peak image; the marrow level of growth is the body's marrow enhancement,
   and the one returned (every enhancement ratio's reference) the peak image's. Muscles and vessels
   enhance too: a region mostly outside the body is grown again confined to the candidate region,
   as a flood is, and dropped only if it is still mostly outside; on a single image it is dropped
   at once (on the enhancement a seed deep in the body is lesion whose region leaked; on a single
   image it is mostly a bright cortex, endplate or vessel). A dynamic series without uptake (an
   injection that failed) leaves only noise to grow on: the U-Net, on the peak image, then
   disagrees and the finding is indeterminate.

Needs only the small localiser's weights, so the node still segments when the U-Net is unavailable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from models.unet_io import segmentation_input
from pipeline.anatomy import (
    BodyRegion,
    ellipse_mask,
    fill_holes_per_slice,
    in_plane_box,
    locate_body,
    marrow_level,
    smoothed,
)

MAX_LESIONS = 5
MAX_SEEDS = 15  # seeds tried, those dropped (outside the body) included
GROWTH_MARGIN_MM = 6.0
MAX_BODY_FRACTION = 0.6
MIN_INSIDE_BODY = 0.5
SEED_DEPTH_MM = 3.0  # seeds lie at least this far inside the body's edge
LEVEL_ROUNDS = 3  # the lesion's level re-estimated from the grown region this many times at most
_GROW = np.zeros((3, 3, 3), dtype=bool)
_GROW[1] = True  # 8-connected in-plane
_GROW[0, 1, 1] = _GROW[2, 1, 1] = True  # and to the same pixel in the neighbouring slices


@dataclass(frozen=True)
class RegionGrowingResult:
    mask: np.ndarray  # (slices, rows, cols) bool
    body: BodyRegion
    seeds: tuple[tuple[int, int, int], ...]
    marrow_level: float


def _partitions(slice_img: np.ndarray, region: np.ndarray, px: float, origin: tuple[int, int] = (0, 0),
                scale: float | None = None) -> np.ndarray:
    """Watershed partitions of ``region`` on one slice (or a box of it whose first row and column
    are ``origin`` in the slice: the markers' grid stays that of the slice); labels > 0 inside.
    The gradient is quantised to 16 bits against ``scale`` (default: its own maximum)."""
    grad = ndimage.gaussian_gradient_magnitude(slice_img, sigma=1.0)
    top = float(grad.max()) if scale is None else scale
    grad = (np.minimum(grad / max(top, 1e-6), 1.0) * 65000).astype(np.uint16)
    markers = np.zeros(slice_img.shape, dtype=np.int32)
    step = max(2, int(round(5.0 / px)))
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return markers
    grid = ((ys + origin[0]) % step == 0) & ((xs + origin[1]) % step == 0)
    markers[ys[grid], xs[grid]] = np.arange(1, int(grid.sum()) + 1)
    background = int(grid.sum()) + 1
    markers[~ndimage.binary_dilation(region, iterations=1)] = background
    labels = ndimage.watershed_ift(grad, markers)
    labels[(labels == background) | ~region] = 0
    return labels


def candidate_region(smooth: np.ndarray, body: BodyRegion, expanded: np.ndarray, px: float) -> np.ndarray:
    """Steps C-D: partitions of each slice that overlap the body by half or more, fused in 3D.

    Computed in the expanded region's bounding box plus a margin wider than the gradient's kernel
    (sigma 1, truncated at 4): outside the region every pixel is the background marker, so the
    partitions are those of the whole slice quantised against the box's largest gradient (the
    slice's largest may lie outside it; identical masks and seeds on 62 studies of three looks)."""
    out = np.zeros(smooth.shape, dtype=bool)
    _, rows, cols = in_plane_box(expanded, pad=8)
    region = expanded[rows, cols]
    for k in range(smooth.shape[0]):
        labels = _partitions(smooth[k, rows, cols], region, px, origin=(rows.start, cols.start))
        if labels.max() == 0:
            continue
        inside = ndimage.sum_labels(body.mask[k, rows, cols], labels, index=np.arange(1, labels.max() + 1))
        size = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, labels.max() + 1))
        keep = np.concatenate([[False], inside >= 0.5 * np.maximum(size, 1)])
        out[k, rows, cols] = keep[labels]
    return out | body.mask


def _component(above: np.ndarray, seed: tuple[int, int, int]) -> np.ndarray:
    """The connected part of ``above`` that holds ``seed`` (empty when the seed is not in it)."""
    labels, _ = ndimage.label(above, structure=_GROW)
    return labels == labels[seed] if labels[seed] else np.zeros_like(above)


def _mostly_outside(region: np.ndarray, body: np.ndarray) -> bool:
    """Less than ``MIN_INSIDE_BODY`` of ``region`` lies in ``body``."""
    return bool(np.count_nonzero(region & body) < MIN_INSIDE_BODY * np.count_nonzero(region))


def _grow(smooth: np.ndarray, seed: tuple[int, int, int], level: float, allowed: np.ndarray, confine: np.ndarray,
          marrow: float, max_voxels: float, body: np.ndarray | None = None) -> np.ndarray:
    """Step F for one seed: growth halfway between marrow and the lesion's level, the level taken
    from what was grown (the last region that did not flood is kept); a region that floods (or,
    ``body`` given, lies mostly outside it) is grown again within ``confine``, then from thresholds
    raised towards the seed. Never empty: no threshold is above the seed's own value."""
    ceiling = float(smooth[seed])

    def component(threshold: float, where: np.ndarray) -> np.ndarray:
        return _component((smooth >= min(threshold, ceiling)) & where, seed)

    where, estimate, kept = allowed, level, None
    for _ in range(LEVEL_ROUNDS + 1):
        grown = component(marrow + 0.5 * (estimate - marrow), where)
        # joined a bright cortex or neighbour, or (on an enhancement image) enhancing muscle
        if (grown.sum() > max_voxels or (body is not None and _mostly_outside(grown, body))) and where is allowed:
            where = allowed & confine
            grown = component(marrow + 0.5 * (estimate - marrow), where)
        if grown.sum() > max_voxels:
            break
        kept = grown
        median = max(float(np.median(smooth[grown])), 1.3 * marrow)  # a lesion is >= 1.3 x marrow
        if abs(median - estimate) < 0.02 * estimate:
            break
        estimate = median
    if kept is not None:
        return kept
    for fraction in (0.65, 0.8):  # a faint seed floods even confined: raise the threshold
        grown = component(marrow + fraction * (level - marrow), where)
        if grown.sum() <= max_voxels:
            break
    return grown


def _grow_from_seeds(smooth: np.ndarray, search: np.ndarray, allowed: np.ndarray, body: np.ndarray,
                     candidate: np.ndarray, marrow: float, body_voxels: int, *, confine_outside: bool = False
                     ) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Steps E-G: grow from the brightest seeds left in ``search`` (changed here) while they stand
    out from the marrow; a flood (and with ``confine_outside`` a region mostly outside the body) is
    confined to ``candidate``; returns the lesions and their seeds."""
    mask = np.zeros(allowed.shape, dtype=bool)
    seeds: list[tuple[int, int, int]] = []
    first_level = None
    for _ in range(MAX_SEEDS):
        if len(seeds) == MAX_LESIONS:
            break
        seed = np.unravel_index(int(np.argmax(search)), search.shape)
        if not np.isfinite(search[seed]):
            break
        z, y, x = (int(v) for v in seed)
        level = float(smooth[z, max(0, y - 1):y + 2, max(0, x - 1):x + 2].mean())
        if first_level is not None and level < max(1.3 * marrow, marrow + 0.5 * (first_level - marrow)):
            break
        if level <= marrow * 1.1:
            break
        # holds the seed (``search`` lies in ``allowed`` and the body, the candidate holds the body),
        # so clearing around it below never leaves the same seed to be taken again
        grown = _grow(smooth, (z, y, x), level, allowed, candidate, marrow, MAX_BODY_FRACTION * body_voxels,
                      body if confine_outside else None)
        grown = fill_holes_per_slice(grown)
        search[ndimage.binary_dilation(grown, iterations=2)] = -np.inf
        if _mostly_outside(grown, body):
            continue  # mostly outside the body: prevertebral or paraspinal tissue, not a bone lesion
        mask |= grown
        seeds.append((z, y, x))
        first_level = level if first_level is None else first_level
    return mask, seeds


def enhancement_image(pixels: np.ndarray) -> np.ndarray | None:
    """(phases, slices, rows, cols) -> what a dynamic series' lesions are grown on (step H): the
    peak over the post-contrast phases minus the pre-contrast phase (phase 1), negative values
    (noise, motion) at 0; None for a single-phase series."""
    if pixels.ndim != 4:
        raise ValueError(f"expected (phases, slices, rows, cols), got shape {pixels.shape}")
    if pixels.shape[0] == 1:
        return None
    return np.maximum(segmentation_input(pixels).astype(np.float32) - pixels[0], 0.0)


def segment(image: np.ndarray, pixel_mm: tuple[float, float], enhancement: np.ndarray | None = None
            ) -> RegionGrowingResult:
    """``image``: (slices, rows, cols) post-contrast (or peak) image; ``enhancement``: for a dynamic
    series, :func:`enhancement_image` (step H). Returns the lesion mask, the body found in ``image``
    and normal marrow's level in ``image`` (whatever the growth ran on)."""
    if enhancement is not None and enhancement.shape != image.shape:
        raise ValueError(f"enhancement shape {enhancement.shape} differs from the image's {image.shape}")
    px = float(np.mean(pixel_mm))
    smooth = smoothed(image, pixel_mm)
    body = locate_body(image, smooth, pixel_mm)
    marrow = marrow_level(smooth, body.mask)
    # what seeds and growth look at: the image, or a dynamic series' enhancement (with its own
    # level of normal marrow, that of the body's marrow enhancement)
    grow_on, grow_marrow = smooth, marrow
    if enhancement is not None:
        grow_on = smoothed(enhancement, pixel_mm)
        grow_marrow = marrow_level(grow_on, body.mask)
    b, a = body.semi_axes
    scale = np.sqrt(5.0)  # area x5
    expanded2d = ellipse_mask(image.shape[1:], body.centre, (b * scale, a * scale))
    expanded = np.broadcast_to(expanded2d, image.shape)
    candidate = candidate_region(grow_on, body, expanded2d, px)
    # growth may leave the body (primary tumours break through the cortex), but only by a margin:
    # the muscles around it enhance as much as a weak tumour does
    margin = max(1, round(GROWTH_MARGIN_MM / px))
    # everything below happens inside the expanded ellipse: work in its bounding box (plus the
    # growth margin), the same pixels at a fraction of the cost of whole 512 x 512 slices
    box = in_plane_box(expanded2d, pad=margin + 3)
    body_box, grow_box = body.mask[box], grow_on[box]
    allowed = expanded[box] & ndimage.binary_dilation(body_box, structure=_GROW, iterations=margin)
    # seeds only where growth is allowed (a seed outside it would lie in no grown component), and
    # deep in the body, away from its cortex (anywhere in the body when no slice of it is thick
    # enough for that). The candidate region holds the body, so it does not restrict the seeds: it
    # confines a region that floods
    depth = max(1, round(SEED_DEPTH_MM / px))
    disk = np.hypot(*np.mgrid[-depth:depth + 1, -depth:depth + 1]) <= depth
    deep = ndimage.binary_erosion(body_box, structure=disk[None])
    search = np.where(allowed & (deep if deep.any() else body_box), grow_box, -np.inf)
    grown_box, seeds = _grow_from_seeds(grow_box, search, allowed, body_box, candidate[box], grow_marrow,
                                        max(int(body.mask.sum()), 1), confine_outside=enhancement is not None)
    mask = np.zeros(image.shape, dtype=bool)
    mask[box] = grown_box
    seeds = [(z, y + box[1].start, x + box[2].start) for z, y, x in seeds]
    return RegionGrowingResult(mask, body, tuple(seeds), marrow)
