"""Radiomics features over a lesion (pyradiomics; the maintained fork pyradiomics-bhklab).

Per parameter map: every feature class of pyradiomics' default set on the original image, the
8 wavelet decompositions and Laplacian-of-Gaussian images at sigma 1-5 mm: 107 + 744 + 465 =
1316 features, the paper's count. Computed on a crop around the lesion (with a margin for the
filters); grey levels in 32 bins (maps have arbitrary units).

Training extracts everything; the node asks only for the features its signature uses
(``only=``): the same settings restricted to the image types (original, wavelet, the LoG sigmas
needed) and feature classes those names come from, which gives the same values in a fraction of
the time.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection
from typing import Any

import numpy as np
import SimpleITK as sitk

LOG_SIGMAS_MM = [1.0, 2.0, 3.0, 4.0, 5.0]
MARGIN_MM = 12.0
_EXTRACTORS: dict[Any, Any] = {}
ALL = None


def _extractor(needed: frozenset[str] | None = ALL):  # noqa: ANN202
    """The full extractor, or one restricted to the ``<imagetype>_<class>_<feature>`` names."""
    if needed not in _EXTRACTORS:
        import radiomics
        from radiomics import featureextractor

        radiomics.setVerbosity(logging.ERROR)  # pyradiomics logs to its own stderr handler

        settings = {"binCount": 32, "label": 1, "normalize": False, "additionalInfo": False}
        if needed is None:
            ex = featureextractor.RadiomicsFeatureExtractor(**settings)
            ex.enableAllFeatures()
            ex.enabledFeatures.pop("shape2D", None)  # 2D shape needs force2D; the 3D shape class stays
            ex.enableImageTypes(Original={}, Wavelet={}, LoG={"sigma": LOG_SIGMAS_MM})
        else:
            classes: dict[str, list[str]] = defaultdict(list)
            types: dict[str, dict] = {}
            sigmas: set[float] = set()
            for name in needed:
                image_type, cls, feature = name.split("_")
                classes[cls].append(feature)
                if image_type == "original":
                    types["Original"] = {}
                elif image_type.startswith("wavelet"):
                    types["Wavelet"] = {}
                else:  # log-sigma-1-0-mm-3D
                    whole, frac = image_type.split("-")[2:4]
                    sigmas.add(float(f"{whole}.{frac}"))
            if sigmas:
                types["LoG"] = {"sigma": sorted(sigmas)}
            ex = _selective_extractor()(needed, **settings)
            ex.disableAllFeatures()
            ex.enableFeaturesByName(**{c: sorted(set(f)) for c, f in classes.items()})
            ex.disableAllImageTypes()
            ex.enableImageTypes(**types)
        _EXTRACTORS[needed] = ex
    return _EXTRACTORS[needed]


def _selective_extractor() -> type:
    """pyradiomics' extractor that, on each filtered image (``original``, ``wavelet-LHL``,
    ``log-sigma-1-0-mm-3D`` ...), computes only the feature classes and features the wanted names
    take from that image, instead of every enabled class on every image (the wavelet filter yields
    8 decompositions; a signature needs a few). The values are pyradiomics' own."""
    from radiomics import featureextractor, getFeatureClasses

    class Selective(featureextractor.RadiomicsFeatureExtractor):
        def __init__(self, needed: frozenset[str], **settings: Any) -> None:
            super().__init__(**settings)
            self.per_image: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
            for name in needed:
                image_type, cls, feature = name.split("_")
                self.per_image[image_type][cls].append(feature)

        def computeFeatures(self, image: Any, mask: Any, imageTypeName: str, **kwargs: Any) -> dict[str, Any]:  # noqa: N802
            out: dict[str, Any] = {}
            for cls, features in self.per_image.get(imageTypeName, {}).items():
                feature_class = getFeatureClasses()[cls](image, mask, **kwargs)
                for feature in features:
                    feature_class.enableFeatureByName(feature)
                for feature, value in feature_class.execute().items():
                    out[f"{imageTypeName}_{cls}_{feature}"] = value
            return out

    return Selective


def _crop(mask: np.ndarray, spacing: tuple[float, float, float]) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    margin = [max(2, int(np.ceil(MARGIN_MM / s))) for s in spacing]
    return tuple(slice(max(0, lo[d] - margin[d]), min(mask.shape[d], hi[d] + margin[d])) for d in range(3))


def _image(array: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing((float(spacing[2]), float(spacing[1]), float(spacing[0])))  # x, y, z
    return img


def extract(maps: dict[str, np.ndarray], mask: np.ndarray, spacing: tuple[float, float, float],
            only: Collection[str] | None = None) -> dict[str, float]:
    """Features of the lesion ``mask`` (slices, rows, cols) on each map, named ``<map>_<feature>``;
    with ``only``, just those names (maps no name uses are skipped).

    ``spacing`` is (slice, row, column) in mm."""
    if mask.sum() < 2:
        raise ValueError("the lesion mask needs at least two voxels")
    box = _crop(mask, spacing)
    roi = _image(mask[box].astype(np.uint8), spacing)
    wanted: dict[str, set[str]] = defaultdict(set)
    for full in only or ():
        map_name, rest = full.split("_", 1)
        wanted[map_name].add(rest)
    out: dict[str, float] = {}
    for name, array in maps.items():
        if only is not None and not wanted[name]:
            continue
        extractor = _extractor(None if only is None else frozenset(wanted[name]))
        result = extractor.execute(_image(array[box].astype(np.float32), spacing), roi)
        for key, value in result.items():
            if not key.startswith("diagnostics") and (only is None or key in wanted[name]):
                out[f"{name}_{key}"] = float(value)
    return out
