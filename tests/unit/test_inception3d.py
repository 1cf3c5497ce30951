"""The 3D Inception-ResNet + SE classifier's shapes, its SE block, and the lesion cube."""

from __future__ import annotations

import numpy as np
import torch

from models.inception3d import InceptionResNet3D, SqueezeExcitation, Stem
from pipeline.cube import CHANNELS, classifier_cube, lesion_cube
from pipeline.parameter_maps import ParameterMaps


def test_shapes_and_the_slice_axis_never_collapses() -> None:
    model = InceptionResNet3D().eval()
    x = torch.randn(2, len(CHANNELS), 12, 64, 64)
    with torch.no_grad():
        feats = model.features(x)
        assert feats.shape[2] == 12 and tuple(feats.shape[3:]) == (4, 4)
        assert model(x).shape == (2, 2)
        p = model.predict_proba(x)
    assert p.shape == (2,) and bool(((p >= 0) & (p <= 1)).all())
    assert sum(q.numel() for q in model.parameters()) < 2_000_000


def test_stem_uses_factorised_1x7_and_7x1_kernels() -> None:
    kernels = {m.kernel_size for m in Stem(4, 4).modules() if isinstance(m, torch.nn.Conv3d)}
    assert (1, 7, 1) in kernels and (1, 1, 7) in kernels


@torch.no_grad()
def test_squeeze_excitation_weights_channels() -> None:
    se = SqueezeExcitation(16)
    x = torch.randn(2, 16, 3, 5, 5)
    w = se.weights(x)
    assert w.shape == (2, 16) and bool(((w > 0) & (w < 1)).all())
    assert torch.allclose(se(x), x * w[:, :, None, None, None])


def test_a_training_step_runs() -> None:
    model = InceptionResNet3D()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(4, len(CHANNELS), 12, 64, 64), torch.tensor([0, 1, 0, 1])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)


def test_lesion_cube_is_centred_and_keeps_absent_maps_empty() -> None:
    image = np.zeros((12, 200, 160), dtype=np.float32)
    image[:, 90:110, 70:90] = 400.0  # a 20 x 20 pixel lesion at 0.5 mm: 10 x 10 mm
    maps = ParameterMaps(image / 200.0, None, None, "single")
    cube = lesion_cube(image, maps, 200.0, (6.0, 99.5, 79.5), (0.5, 0.5))
    assert cube.shape == (len(CHANNELS), 12, 64, 64)
    assert np.allclose(cube[2:], 0)  # single-phase: no inflow, no outflow; no mask given
    bright = np.argwhere(cube[0, 6] > 1.5)
    assert np.allclose(bright.mean(axis=0), [31.5, 31.5], atol=0.6)
    assert 8 <= np.ptp(bright[:, 0]) + 1 <= 12  # about 10 mm at 1 mm pixels


def test_the_mask_channel_holds_the_lesion_classified_alone() -> None:
    """Another segmented component in the window (on a shifted look often a false one) is not
    shown to the classifier; the cube is centred on the lesion classified."""
    image = np.full((12, 200, 160), 200.0, dtype=np.float32)
    lesion = np.zeros(image.shape, dtype=bool)
    lesion[4:8, 90:110, 70:90] = True  # 10 x 10 mm at 0.5 mm pixels
    other = np.zeros(image.shape, dtype=bool)
    other[4:8, 90:100, 110:120] = True  # 15 mm to the right: inside the 64 mm window
    image[lesion | other] = 400.0
    maps = ParameterMaps(image / 200.0, None, None, "single")
    cube = classifier_cube(image, maps, 200.0, lesion, (3.0, 0.5, 0.5))
    assert np.argwhere(cube[0, 5] > 1.5)[:, 1].max() > 44  # the other component is in the window
    mask = cube[-1] > 0.5
    assert mask[:4].sum() == 0 and mask[8:].sum() == 0
    assert np.allclose(np.argwhere(mask[5]).mean(axis=0), [31.5, 31.5], atol=0.6)
    assert np.ptp(np.argwhere(mask[5])[:, 1]) + 1 <= 12  # 10 mm wide: the other one is not in it
