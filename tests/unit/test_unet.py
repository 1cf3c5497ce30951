"""The improved U-Net: shapes, the attention gate, weights with checksums, a training step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models import weights
from models.unet import AttentionGate, AttentionResUNet, ResidualBlock
from models.unet_io import from_network, mask_to_network, network_window, segmentation_input, to_network
from training.errors import CheckpointMismatchError
from training.train_unet import TrainConfig, blur_some, soften_lesions, train


def test_residual_block_shapes_and_shortcut() -> None:
    block = ResidualBlock(1, 16)
    assert block(torch.randn(2, 1, 32, 32)).shape == (2, 16, 32, 32)
    assert isinstance(block.shortcut[0], torch.nn.Conv2d) and block.shortcut[0].kernel_size == (1, 1)


def test_unet_shapes_sixteen_channels_and_32x32_bottleneck() -> None:
    model = AttentionResUNet().eval()
    seen: dict = {}

    def keep(name: str):  # noqa: ANN202 - a hook must return None or it replaces the output
        def hook(_module, _inputs, output) -> None:  # noqa: ANN001
            seen[name] = output.shape
        return hook

    model.encoders[-1].register_forward_hook(keep("bottleneck"))
    model.encoders[0].register_forward_hook(keep("first"))
    with torch.no_grad():
        out = model(torch.randn(1, 1, 512, 512))
    assert out.shape == (1, 2, 512, 512)
    assert seen["first"][1] == 16 and tuple(seen["bottleneck"][-2:]) == (32, 32)
    prob = model.predict_proba(torch.randn(1, 1, 64, 64))
    assert prob.shape == (1, 64, 64) and float(prob.min()) >= 0 and float(prob.max()) <= 1


@torch.no_grad()
def test_attention_gate_follows_equation_2() -> None:
    gate = AttentionGate(x_ch=4, g_ch=6, inter_ch=3)
    x, g = torch.randn(2, 4, 8, 8), torch.randn(2, 6, 8, 8)
    alpha = gate.coefficients(x, g)
    assert alpha.shape == (2, 1, 8, 8) and float(alpha.min()) >= 0 and float(alpha.max()) <= 1
    expected = torch.sigmoid(gate.psi(torch.relu(gate.w_x(x) + gate.w_g(g))))
    assert torch.allclose(alpha, expected)
    assert torch.allclose(gate(x, g), x * expected)  # one weight per pixel, shared by channels
    gate.psi.bias.fill_(-50.0)
    assert float(gate(x, g).abs().max()) < 1e-6  # a closed gate suppresses the skip entirely


def test_io_round_trip_keeps_geometry_for_non_square_matrices() -> None:
    mask = np.zeros((3, 256, 192), dtype=bool)
    mask[1, 100:140, 60:90] = True
    net = mask_to_network(mask)
    assert net.shape == (3, 512, 512)
    back = from_network(net.float(), (256, 192)) >= 0.5
    assert back.shape == mask.shape and (back ^ mask).sum() < 0.05 * mask.sum()
    assert to_network(np.ones((2, 256, 192), dtype=np.float32)).shape == (2, 1, 512, 512)


@pytest.mark.parametrize(("shape", "box"), [((256, 192), (100, 140, 60, 120)), ((512, 512), (0, 40, 470, 512)),
                                            ((320, 320), (0, 320, 0, 320)), ((384, 384), (190, 191, 10, 11))])
def test_network_window_covers_the_box_in_multiples_of_16(shape: tuple[int, int], box: tuple[int, ...]) -> None:
    rows, cols = network_window(shape, box, margin=8)
    side = max(shape)
    marked = np.zeros(shape, dtype=np.float32)
    marked[box[0]:box[1], box[2]:box[3]] = 1.0
    grid = to_network(marked[None])[0, 0].numpy()
    inside = np.zeros_like(grid, dtype=bool)
    inside[rows, cols] = True
    assert grid[~inside].max(initial=0.0) == 0.0  # the window holds every grid pixel the box touches
    for s in (rows, cols):
        assert 0 <= s.start < s.stop <= 512 and (s.stop - s.start) % 16 == 0
    if side == 320 and box[1] == 320:
        assert (rows, cols) == (slice(0, 512), slice(0, 512))


def test_segmentation_input_uses_the_post_contrast_peak() -> None:
    pixels = np.stack([np.full((2, 4, 4), v, dtype=np.float32) for v in (1, 5, 3)])
    assert segmentation_input(pixels).max() == 5
    assert segmentation_input(pixels[:1]).max() == 1


def test_shipped_weights_load_with_their_checksum() -> None:
    model = AttentionResUNet()
    digest = weights.load_into(model, weights.WEIGHTS_DIR / "unet.pt")
    assert len(digest) == 64
    assert (weights.WEIGHTS_DIR / "unet.pt").stat().st_size < 8 * 1024 * 1024


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "unet.pt"
    weights.save(AttentionResUNet(base=4), path, {"note": "test"})
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(weights.WeightsError, match="SHA-256"):
        weights.load_into(AttentionResUNet(base=4), path)


def test_training_runs_two_steps_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both phantom looks, fine-tuning from the shipped weights, the prepared-data cache, resume;
    every step softens its share of the lesion crops and blurs its share of the crops."""
    import training.train_unet
    from pipeline.segmentation import DEFAULT_WEIGHTS

    shares: list[float] = []
    blurred: list[float] = []

    def spy(images, masks, gen, share, **kw):  # noqa: ANN001, ANN003, ANN202 - soften_lesions' signature
        shares.append(share)
        return soften_lesions(images, masks, gen, share, **kw)

    def blur_spy(images, gen, share, **kw):  # noqa: ANN001, ANN003, ANN202 - blur_some's signature
        blurred.append(share)
        return blur_some(images, gen, share, **kw)

    monkeypatch.setattr(training.train_unet, "soften_lesions", spy)
    monkeypatch.setattr(training.train_unet, "blur_some", blur_spy)
    cfg = TrainConfig(epochs=2, steps_per_epoch=2, batch=2, crop=64, train_studies=2, val_studies=1, threads=1,
                      bf16=False, look="mixed", randomised_fraction=0.5, init=str(DEFAULT_WEIGHTS), device="cpu",
                      soften=0.6, blur=0.4)
    cache = tmp_path / "data.pt"
    first = train(cfg, tmp_path / "work", tmp_path / "unet.pt", stop_after=1, cache=cache)
    assert shares == [0.6, 0.6] and blurred == [0.4, 0.4]
    assert len(first["history"]) == 1 and (tmp_path / "unet.pt.sha256").exists() and cache.exists()
    assert first["data"] == "mixed phantom seeds 10000-10001"
    resumed = train(cfg, tmp_path / "work", None, resume=True, cache=cache)
    assert [h["epoch"] for h in resumed["history"]] == [1, 2]
    with pytest.raises(CheckpointMismatchError, match="same --epochs"):
        train(TrainConfig(**{**cfg.__dict__, "epochs": 3}), tmp_path / "work", None, resume=True)


def test_blur_some_blurs_its_share_of_the_crops_and_nothing_else() -> None:
    images, _ = _lesion_crops(6)
    images[:, :, 5, 5] = 5.0  # a spike that any blur lowers
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert blur_some(images, gen, 0.0) is images
    assert torch.equal(gen.get_state(), state)  # no random numbers drawn: old recipes train as before
    every = blur_some(images, gen, 1.0)
    assert every.shape == images.shape and torch.equal(images[:, :, 5, 5], torch.full((6, 1), 5.0))
    assert (every[:, 0, 5, 5] < 4.0).all()  # every crop blurred, the input left as it was
    assert (every[:, 0, 32, 32] > 0.7).all()  # a blur, not a wipe: the lesion's middle stays at its level
    assert (every[:, 0, 20:44, 20:44].std((1, 2)) < images[:, 0, 20:44, 20:44].std((1, 2))).all()
    weak = blur_some(images, torch.Generator().manual_seed(0), 1.0, sigma_px=(0.5, 0.5))
    strong = blur_some(images, torch.Generator().manual_seed(0), 1.0, sigma_px=(2.5, 2.5))
    assert (strong[:, 0, 5, 5] < weak[:, 0, 5, 5]).all()  # sigma within the range asked for
    spikes = every[:, 0, 5, 5]  # sigmas drawn over the whole default range
    assert ((spikes <= weak[:, 0, 5, 5] + 1e-5) & (spikes >= strong[:, 0, 5, 5] - 1e-5)).all()
    middle = blur_some(images, torch.Generator().manual_seed(0), 1.0, sigma_px=(1.5, 1.5))[:, 0, 5, 5]
    assert 0 < int((spikes < middle).sum()) < 6
    some = blur_some(images, torch.Generator().manual_seed(3), 0.5)
    changed = (some != images).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 6


def _lesion_crops(n: int, lesion: float = 0.8, radius: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    masks = (((yy - 32) ** 2 + (xx - 32) ** 2) < radius ** 2).float()[None, None].repeat(n, 1, 1, 1)
    images = 0.3 + 0.02 * torch.randn(n, 1, 64, 64, generator=gen) + (lesion - 0.3) * masks
    return images, masks


def test_softened_lesions_reach_the_asked_ratio_and_keep_most_of_their_noise() -> None:
    """Each lesion's median lands at 1.15-1.45 x the marrow around it (within noise); nothing
    changes beyond 2 pixels from the lesion, and most of the lesion's noise stays."""
    images, masks = _lesion_crops(16)
    out = soften_lesions(images, masks, torch.Generator().manual_seed(0), 1.0)
    near = torch.nn.functional.max_pool2d(masks, 5, stride=1, padding=2) > 0
    ratios = []
    for i in range(16):
        inside = masks[i] > 0
        ratios.append(float(out[i][inside].median() / images[i][~near[i]].median()))
        assert 1.12 <= ratios[-1] <= 1.48
        assert torch.equal(out[i][~near[i]], images[i][~near[i]])
        assert float(out[i][inside].std()) > 0.6 * float(images[i][inside].std())
    assert max(ratios) - min(ratios) > 0.1  # a range, not one value


def test_a_softened_lesion_keeps_its_border() -> None:
    """The partial-volume edge shrinks with the lesion: half-way between marrow and the softened
    lesion is still the mask's border (a blurred disc, softened to 1.3 x)."""
    images, masks = _lesion_crops(1)
    images = torch.nn.functional.avg_pool2d(images, 3, stride=1, padding=1, count_include_pad=False)
    out = soften_lesions(images, masks, torch.Generator().manual_seed(0), 1.0, ratio=(1.3, 1.3))
    ref, level = float(out[0][masks[0] == 0].median()), float(out[0][masks[0] > 0].median())
    above = out[0, 0] > (ref + level) / 2
    assert float((above ^ (masks[0, 0] > 0)).float().sum()) <= 0.1 * float(masks.sum())


def test_the_edge_two_pixels_outside_the_mask_is_softened_too() -> None:
    """The bright partial-volume edge can reach 2 pixels beyond the mask: it is scaled with the
    lesion, or a bright halo would stay around a faint lesion."""
    images, _ = _lesion_crops(4, radius=12)
    _, masks = _lesion_crops(4, radius=10)
    out = soften_lesions(images, masks, torch.Generator().manual_seed(0), 1.0)
    pool = torch.nn.functional.max_pool2d
    second = (pool(masks, 5, stride=1, padding=2) > 0) & ~(pool(masks, 3, stride=1, padding=1) > 0)
    assert float(out[second].mean()) < float(images[second].mean()) - 0.2


def test_a_dark_core_is_not_brightened() -> None:
    """Only enhancement above the surrounding marrow is scaled: a necrotic core darker than marrow
    (a rim-enhancing lesion) keeps its values."""
    images, masks = _lesion_crops(4, radius=10)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    core = ((yy - 32) ** 2 + (xx - 32) ** 2) < 4 ** 2
    deep = ((yy - 32) ** 2 + (xx - 32) ** 2) < 2 ** 2
    images[:, :, core] = 0.1
    out = soften_lesions(images, masks, torch.Generator().manual_seed(0), 1.0)
    assert not torch.equal(out, images)
    assert torch.equal(out[:, :, deep], images[:, :, deep])


@pytest.mark.parametrize(("share", "lesion", "radius", "changed"), [
    (0.0, 0.8, 10, 0),   # share 0: nothing
    (1.0, 0.33, 10, 0),  # already fainter than 1.15 x marrow
    (1.0, 0.8, 1, 0),    # fewer than 9 lesion pixels
    (1.0, 0.8, 2, 8),    # 9 lesion pixels: enough
    (1.0, 0.8, 50, 0),   # the lesion fills the crop: no marrow around it to compare with
    (1.0, 0.8, 10, 8),
])
def test_soften_lesions_leaves_what_it_should(share: float, lesion: float, radius: int, changed: int) -> None:
    images, masks = _lesion_crops(8, lesion, radius)
    out = soften_lesions(images, masks, torch.Generator().manual_seed(0), share)
    assert sum(not torch.equal(out[i], images[i]) for i in range(8)) == changed


def test_soften_lesions_picks_about_the_share_and_leaves_lesion_free_crops() -> None:
    images, masks = _lesion_crops(200)
    masks[100:] = 0
    out = soften_lesions(images, masks, torch.Generator().manual_seed(0), 0.3)
    changed = [not torch.equal(out[i], images[i]) for i in range(200)]
    assert 18 <= sum(changed[:100]) <= 42 and not any(changed[100:])


def test_site_folder_of_dicom_and_seg_gives_the_same_masks(tmp_path: Path) -> None:
    """How a site retrains: any tree of DICOM series + SEG files; masks match the ground truth."""
    from phantom import generate_study, write_study
    from training.seg_data import labelled_folder

    studies = {s: generate_study(s, matrix=(256, 192), phases=p) for s, p in ((31, 1), (32, 3))}
    for study in studies.values():
        write_study(study, tmp_path)
    found = {name: (volume.pixels, mask) for name, volume, mask in labelled_folder(tmp_path)}
    assert sorted(found) == ["study_31", "study_32"]
    for seed, study in studies.items():
        pixels, mask = found[f"study_{seed}"]
        assert pixels.shape == study.pixels.shape
        assert np.array_equal(mask, study.mask)
    from training.train_unet import load_data

    train_set, val = load_data(TrainConfig(), tmp_path)  # one study each, at network size
    assert train_set.images.shape == (12, 512, 512) and len(val) == 1 and val[0].masks.any()


def test_the_window_around_the_body_gives_the_whole_slices_answer() -> None:
    """The node runs the U-Net only around the located body; its mask matches the whole-slice
    run's (both kept to the body; Dice 0.996 with the shipped weights `d290ecbb`, 0.98 with
    `aee7549d`, 0.97 with `bf8d59d9` and `347dfad6`, 0.96 with `31fd570e`, 0.99 with `1fe0931d`, 0.94
    with `2a48f20d`: the window's edges change the network's context; a misplaced window scores near
    0), and without a body the whole slices are used."""
    from phantom import generate_study
    from pipeline.plausibility import keep_in_body
    from pipeline.region_growing import segment as region_growing
    from pipeline.segmentation import UNetSegmenter, body_box

    study = generate_study(900002, phases=1, matrix=(256, 256))
    image = segmentation_input(study.pixels).astype(np.float32)
    px = (study.params.pixel_spacing_mm,) * 2
    rg = region_growing(image, px)
    body = rg.body.mask
    segmenter = UNetSegmenter(precision="fp32")
    whole = keep_in_body(segmenter.segment(image, rg.marrow_level), body, px)
    windowed = segmenter.segment_in_body(image, body, rg.marrow_level, px)
    assert whole.sum() > 100 and 2 * (whole & windowed).sum() / (whole.sum() + windowed.sum()) > 0.9
    assert body_box(np.zeros_like(body), px, 30.0) is None  # no body: whole slices
    top, bottom, left, right = body_box(body, px, 30.0)
    rows, cols = np.flatnonzero(body.any(axis=(0, 2))), np.flatnonzero(body.any(axis=(0, 1)))
    margin = int(np.ceil(30.0 / px[0]))
    assert (top, bottom) == (max(rows[0] - margin, 0), min(rows[-1] + 1 + margin, 256))
    assert (left, right) == (max(cols[0] - margin, 0), min(cols[-1] + 1 + margin, 256))


def test_the_node_drops_the_networks_faint_one_slice_blobs() -> None:
    """Held-out classic study 900017 (256x192): the network draws faint one-slice blobs beside the
    lesion (95 voxels with `bf8d59d9`, 77 with `aee7549d`, 16 with the shipped `d290ecbb`, none of
    them lesion); the node's mask leaves them out, keeps every lesion voxel the network found in the
    body, and matches the truth better (Dice 0.959 -> 0.992 with `bf8d59d9` in the held-out run of
    2026-12-02; 0.963 -> 0.990 with `aee7549d`; 0.985 -> 0.991 with `d290ecbb`)."""
    from phantom import generate_study
    from pipeline.metrics import dice
    from pipeline.plausibility import keep_in_body
    from pipeline.region_growing import segment as region_growing
    from pipeline.segmentation import UNetSegmenter

    study = generate_study(900017, phases=1)
    image = segmentation_input(study.pixels).astype(np.float32)
    px = (study.params.pixel_spacing_mm,) * 2
    rg = region_growing(image, px)
    segmenter = UNetSegmenter(precision="fp32")
    every = keep_in_body(segmenter.probabilities_in_body(image, rg.body.mask, rg.marrow_level, px) >= 0.5,
                         rg.body.mask, px)
    node = segmenter.segment_in_body(image, rg.body.mask, rg.marrow_level, px)
    dropped = every & ~node
    assert not (node & ~every).any() and dropped.sum() >= 10
    assert not (dropped & study.mask).any() and (node & study.mask).sum() == (every & study.mask).sum()
    assert dice(node, study.mask) > dice(every, study.mask) + 0.003


def test_the_unet_input_is_relative_to_normal_marrow_whatever_the_gain() -> None:
    """The U-Net's input puts normal marrow (measured in the body the spine localiser finds) at 0.25
    and twice it at 0.5, clipped at 8 x marrow; the prepared training slices are the same for a
    scanner with three times the gain, and a phantom lesion (1.3-3.0 x marrow) lands in its band."""
    from models.unet_io import scale_by_marrow
    from phantom import generate_study
    from phantom.randomised import generate_randomised
    from pipeline.anatomy import normal_marrow
    from training.seg_data import prepare

    assert np.allclose(scale_by_marrow(np.array([0.0, 100.0, 200.0, 800.0, 5000.0]), 100.0), [0, 0.25, 0.5, 2, 2])
    study = generate_study(31, matrix=(256, 256))
    px = (study.params.pixel_spacing_mm,) * 2
    once = prepare(study.pixels, study.mask, px)
    brighter = prepare(study.pixels.astype(np.float32) * 3, study.mask, px)
    assert torch.allclose(once.images.float(), brighter.images.float(), atol=2e-3)
    wild = generate_randomised(4, matrix=(256, 256))  # marrow at 0.45 of the 99.5th percentile
    image = segmentation_input(wild.pixels).astype(np.float32)
    marrow = normal_marrow(image, (wild.meta["pixel_mm"],) * 2)
    assert abs(marrow / float(np.percentile(image, 99.5)) - 0.25) > 0.1  # not the 99.5th percentile's scale
    prepared = prepare(wild.pixels, wild.mask, (wild.meta["pixel_mm"],) * 2)
    assert torch.equal(prepared.images, to_network(scale_by_marrow(image, marrow))[:, 0].half())
    assert 0.3 < float(once.images[once.masks.bool()].float().median()) < 0.8


def test_the_node_feeds_the_network_marrow_at_a_quarter() -> None:
    """What the segmenter hands the network: an image that is all normal marrow arrives at 0.25
    everywhere, whatever the scanner's level (the network was trained so; another scale runs
    without error and segments worse on the shifted look)."""
    from pipeline.segmentation import UNetSegmenter

    segmenter = UNetSegmenter(precision="fp32")
    seen: list[torch.Tensor] = []
    segmenter.model.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    for level in (80.0, 1400.0):
        seen.clear()
        segmenter.probabilities(np.full((2, 64, 64), level, dtype=np.float32), level)
        assert seen and all(torch.allclose(x, torch.full_like(x, 0.25)) for x in seen)


def test_the_node_averages_the_network_over_the_mirror_image() -> None:
    """The node's probability is the mean of the network's output on each slice and on its
    left-right mirror image, mirrored back (mask version 2), so mirroring the image mirrors the
    probability exactly; the network sees each slice and its mirror in one batch."""
    from pipeline.segmentation import MASK_VERSION, UNetSegmenter

    assert MASK_VERSION == 2
    segmenter = UNetSegmenter(precision="fp32")
    rng = np.random.default_rng(3)
    image = rng.uniform(50, 400, (3, 64, 64)).astype(np.float32)
    image[:, 20:34, 10:24] = 700.0  # an off-centre bright square: no mirror symmetry to hide behind
    seen: list[torch.Tensor] = []
    segmenter.model.register_forward_pre_hook(lambda _module, args: seen.append(args[0].detach().clone()))
    prob = segmenter.probabilities(image, 200.0)
    assert [len(x) for x in seen] == [6] and torch.equal(seen[0][3:], seen[0][:3].flip(-1))
    mirrored = segmenter.probabilities(image[:, :, ::-1].copy(), 200.0)
    assert np.allclose(mirrored, prob[:, :, ::-1], atol=1e-5)
    with torch.no_grad():
        out = torch.softmax(segmenter.model(seen[0]), dim=1)[:, 1]
    single, mirror = from_network(out[:3], (64, 64)), from_network(out[3:].flip(-1), (64, 64))
    assert np.abs(single - prob).max() > 1e-3  # one pass alone is not mirror-equivariant
    assert np.allclose(prob, 0.5 * (single + mirror), atol=1e-5)
