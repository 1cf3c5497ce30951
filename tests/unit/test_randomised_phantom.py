"""The domain-randomised phantom look (3D label maps, random tissue intensities)."""

from __future__ import annotations

import numpy as np
import pytest

from phantom.anatomy3d import Label, coordinates
from phantom.randomised import generate_randomised
from training.looks import LOOKS, studies


@pytest.fixture(scope="module")
def study():  # noqa: ANN201
    return generate_randomised(11, matrix=(256, 256))


def test_same_seed_same_arrays(study) -> None:  # noqa: ANN001
    again = generate_randomised(11, matrix=(256, 256))
    assert np.array_equal(study.pixels, again.pixels) and np.array_equal(study.mask, again.mask)
    assert not np.array_equal(study.pixels, generate_randomised(12, matrix=(256, 256)).pixels)


def test_shapes_types_and_truth(study) -> None:  # noqa: ANN001
    assert study.pixels.shape == (1, 12, 256, 256) and study.pixels.dtype == np.uint16
    assert study.mask.shape == (12, 256, 256) and study.mask.any()
    assert (study.spine | ~study.mask).all()  # every lesion voxel lies in the spine mask
    assert 500 <= int(study.pixels.max()) <= 65535


@pytest.mark.parametrize("label", [0, 1])
def test_lesions_enhance_as_the_specification_fixes(label: int) -> None:
    """Mean lesion signal against marrow within the class's peak range, whatever else is random."""
    for seed in range(3):
        s = generate_randomised(100 + seed, matrix=(256, 256), label=label)
        assert s.label == label
        image = s.pixels[0].astype(float)
        marrow = np.median(image[s.spine & ~s.mask & (image > 0)])
        ratio = float(np.median(image[s.mask])) / marrow
        assert 0.9 < ratio < 4.5, ratio  # noise, texture and the lesion pattern blur the 1.3-3.0 band


def test_tilt_is_rendered_in_the_pixels() -> None:
    flat = coordinates((12, 8, 8), (3.0, 1.0, 1.0), (0.0, 0.0), (0.0, 0.0, 0.0))
    tilted = coordinates((12, 8, 8), (3.0, 1.0, 1.0), (10.0, 0.0), (0.0, 0.0, 0.0))
    assert np.ptp(flat.z[0]) == 0 and np.ptp(tilted.z[0]) > 1  # one slice spans several heights


def test_looks_yield_studies_of_each_kind() -> None:
    assert set(LOOKS) == {"classic", "randomised"}
    for look in LOOKS:
        seed, pixels, mask = next(iter(studies(look, [5])))
        assert seed == 5 and pixels.ndim == 4 and mask.shape == pixels.shape[1:]
    with pytest.raises(ValueError, match="unknown phantom look"):
        next(iter(studies("other", [1])))
    assert int(Label.LESION) == max(Label)
