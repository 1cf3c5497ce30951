"""Radiomics features over a lesion (pyradiomics; the maintained fork pyradiomics-bhklab).

Per parameter map: every feature class of pyradiomics' default set on the original image, the
8 wavelet decompositions and Laplacian-of-Gaussian images at sigma 1-5 mm: 107 + 744 + 465 =
1316 features, the paper's count. Computed on a crop around the lesion (with a margin for the
filters); grey levels in 32 bins (maps have arbitrary units).
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

LOG_SIGMAS_MM = [1.0, 2.0, 3.0, 4.0, 5.0]
MARGIN_MM = 12.0
_EXTRACTOR = None


def _extractor():  # noqa: ANN202
    global _EXTRACTOR
    if _EXTRACTOR is None:
        import radiomics
        from radiomics import featureextractor

        radiomics.setVerbosity(logging.ERROR)  # pyradiomics logs to its own stderr handler

        ex = featureextractor.RadiomicsFeatureExtractor(binCount=32, label=1, normalize=False,
                                                        additionalInfo=False)
        ex.enableAllFeatures()
        ex.enabledFeatures.pop("shape2D", None)  # 2D shape needs force2D; the 3D shape class stays
        ex.enableImageTypes(Original={}, Wavelet={}, LoG={"sigma": LOG_SIGMAS_MM})
        _EXTRACTOR = ex
    return _EXTRACTOR


def _crop(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    margin = [max(2, int(np.ceil(MARGIN_MM / s))) for s in spacing]
    return tuple(slice(max(0, lo[d] - margin[d]), min(mask.shape[d], hi[d] + margin[d])) for d in range(3))


def _image(array: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))  # x, y, z
    return img


def extract(maps: dict[str, np.ndarray], mask: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Features of the lesion ``mask`` (slices, rows, cols) on each map, named ``<map>_<feature>``.

    ``spacing`` is (slice, row, column) in mm."""
    if mask.sum() < 2:
        raise ValueError("the lesion mask needs at least two voxels")
    box = _crop(mask, spacing)
    roi = _image(mask[box].astype(np.uint8), spacing)
    out: dict[str, float] = {}
    for name, array in maps.items():
        result = _extractor().execute(_image(array[box].astype(np.float32), spacing), roi)
        for key, value in result.items():
            if not key.startswith("diagnostics"):
                out[f"{name}_{key}"] = float(value)
    return out
