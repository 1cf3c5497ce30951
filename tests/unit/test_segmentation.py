"""Region growing, lesion measurements and the analysis entry point on phantoms."""

from __future__ import annotations

import numpy as np
import pytest

from phantom import generate_study
from pipeline.lesions import find_lesions, max_diameter
from pipeline.metrics import overlap_coefficient, segmentation_scores
from pipeline.region_growing import segment
from pipeline.volume import Volume


def test_metrics_follow_equations_10_to_12() -> None:
    truth = np.zeros((1, 4, 4), dtype=bool)
    truth[0, :2, :2] = True
    pred = np.zeros_like(truth)
    pred[0, :2, :1] = True
    pred[0, 3, 3] = True
    s = segmentation_scores(pred, truth)  # TP 2, FP 1, FN 2, TN 11
    assert s["pa"] == pytest.approx(13 / 16) and s["iou"] == pytest.approx(2 / 5)
    assert s["dice"] == pytest.approx(4 / 7)
    assert segmentation_scores(np.zeros_like(truth), np.zeros_like(truth))["dice"] == 1.0


def test_overlap_coefficient_is_the_share_of_the_smaller_mask_in_the_other() -> None:
    """Where two outlines are, not how alike they are: a region grown too large around the U-Net's
    lesion agrees fully, two lesions side by side not at all, whatever the sizes."""
    lesion = np.zeros((2, 8, 8), dtype=bool)
    lesion[0, 2:4, 2:4] = True  # 4 voxels
    grown = np.zeros_like(lesion)
    grown[:, 1:6, 1:6] = True  # 50 voxels holding the lesion
    assert overlap_coefficient(lesion, grown) == overlap_coefficient(grown, lesion) == 1.0
    part = np.zeros_like(lesion)
    part[0, 3:5, 2:4] = True  # 4 voxels, 2 of them in the lesion
    assert overlap_coefficient(lesion, part) == pytest.approx(0.5)
    apart = np.zeros_like(lesion)
    apart[1, 6:8, 6:8] = True
    assert overlap_coefficient(lesion, apart) == 0.0
    assert overlap_coefficient(lesion, np.zeros_like(lesion)) == 0.0  # nothing to agree with
    assert overlap_coefficient(lesion.astype(np.uint8), grown.astype(np.uint8)) == 1.0


def test_region_growing_finds_most_metastases() -> None:
    """Median Dice over ten metastasis phantoms; single failures happen (the body locator can
    miss), which is why the U-Net is the primary segmentation."""
    scores = []
    for seed in range(910000, 910010):
        study = generate_study(seed, label=1, matrix=(256, 256))
        px = study.params.pixel_spacing_mm
        result = segment(study.pixels[0].astype(np.float32), (px, px))
        scores.append(segmentation_scores(result.mask, study.mask)["dice"])
    assert float(np.median(scores)) > 0.85
    assert sum(s > 0.7 for s in scores) >= 7


def _volume(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> Volume:
    positions = np.array([[0.0, 0.0, k * spacing[0]] for k in range(shape[0])])
    return Volume(pixels=np.zeros((1, *shape), dtype=np.float32), positions=positions,
                  orientation=(1, 0, 0, 0, 1, 0), spacing=spacing,
                  sop_instance_uids=(tuple(str(k) for k in range(shape[0])),), study_uid="1", series_uid="2")


def test_lesion_volume_and_diameter_in_millimetres() -> None:
    mask = np.zeros((6, 40, 40), dtype=bool)
    mask[1:4, 10:20, 10:30] = True  # 3 slices x 10 rows x 20 cols
    mask[5, 0, 0] = True  # below the minimum size
    volume = _volume(mask.shape, (3.0, 0.5, 0.5))
    image = np.where(mask, 400.0, 200.0).astype(np.float32)
    (lesion,) = find_lesions(mask, volume, image, marrow_level=200.0)
    assert lesion.volume_mm3 == pytest.approx(600 * 0.75)
    expected = np.sqrt((19 * 0.5) ** 2 + (9 * 0.5) ** 2 + (2 * 3.0) ** 2)
    assert lesion.max_diameter_mm == pytest.approx(expected, rel=1e-6)
    assert lesion.mean_enhancement == pytest.approx(2.0) and lesion.largest_slice == 1


def test_max_diameter_of_a_line() -> None:
    assert max_diameter(np.array([[0, 0, 0], [3, 4, 0], [1, 1, 0]], dtype=float)) == pytest.approx(5.0)


def test_hd95_in_millimetres_and_empty_masks() -> None:
    from training.evaluate_seg import hd95_mm

    truth = np.zeros((3, 50, 50), dtype=bool)
    truth[1, 10:20, 10:20] = True
    shifted = np.zeros_like(truth)
    shifted[1, 12:22, 10:20] = True  # two rows of 0.5 mm
    assert hd95_mm(shifted, truth, (3.0, 0.5, 0.5)) == pytest.approx(1.0)
    assert hd95_mm(truth, truth, (3.0, 0.5, 0.5)) == 0.0
    assert np.isnan(hd95_mm(np.zeros_like(truth), truth, (3.0, 0.5, 0.5)))


def test_evaluate_seg_writes_every_metric(tmp_path) -> None:  # noqa: ANN001
    import json

    from training.evaluate_seg import evaluate

    result = evaluate(1, tmp_path, look="randomised", precision="fp32")
    row = result["rows"][0]
    for method in ("unet", "region_growing"):
        assert 0.0 <= row[f"{method}_dice"] <= 1.0 and f"{method}_hd95_mm" in row
    summary = json.loads((tmp_path / "segmentation_summary.json").read_text())
    assert summary["unet_dice"]["mean"] == pytest.approx(row["unet_dice"])
    table = (tmp_path / "segmentation_table.md").read_text()
    assert "HD95 (mm)" in table
    assert (tmp_path / "segmentation.png").stat().st_size > 10_000
    # the randomised look's studies are also scored by contrast: seed 900000's tissues are wild
    assert row["contrast"] == "wild" and summary["contrast_wild"]["studies"] == 1
    assert summary["contrast_wild"]["unet_dice"]["mean"] == pytest.approx(row["unet_dice"])
    assert "| Improved U-Net, wild contrast (n = 1) |" in table and "table contrast" not in table


def test_evaluate_seg_grows_a_dynamic_study_as_the_node_does(tmp_path) -> None:  # noqa: ANN001
    """With ``phases`` > 1 region growing is scored on the enhancement, as the node runs it:
    randomised study 905032 (3 phases) scores 0.95, where the peak image alone gives 0.12."""
    from training.evaluate_seg import evaluate

    row = evaluate(1, tmp_path, seed=905032, phases=3, look="randomised", precision="fp32")["rows"][0]
    assert row["region_growing_dice"] > 0.9


def test_region_growing_goes_past_brighter_seeds_outside_the_body() -> None:
    """Randomised study 900017: tissue beside the vertebral body outshines the metastasis, and a
    threshold halfway to the brightest voxel of the textured lesion cut it to a tenth. Seeds must lie
    deep in the located body (never on its edge or outside it), and the lesion's level comes from
    what was grown: most of the lesion is found, and not much else."""
    from scipy import ndimage

    from phantom.randomised import generate_randomised
    from pipeline.region_growing import SEED_DEPTH_MM

    r = generate_randomised(900017)
    image = r.pixels[0].astype(np.float32)
    px = float(r.meta["pixel_mm"])
    result = segment(image, (px, px))
    depth = ndimage.distance_transform_edt(result.body.mask, sampling=(1e6, px, px))  # in-plane only
    assert result.seeds and all(depth[s] >= SEED_DEPTH_MM for s in result.seeds)
    assert (result.mask & r.mask).sum() > 0.9 * r.mask.sum()
    assert segmentation_scores(result.mask, r.mask)["dice"] > 0.6  # 0.17 before


def test_region_growing_takes_the_lesions_level_from_what_it_grew() -> None:
    """A lesion whose centre is twice as bright as its edge (a seed sits at its brightest voxel):
    halfway between marrow and the seed's level would keep only the centre; the level re-estimated
    from the grown region keeps the whole lesion and stops at the marrow."""
    from pipeline.region_growing import _grow

    shape = (3, 60, 60)
    yy, xx = np.mgrid[0:60, 0:60]
    r = np.hypot(yy - 30, xx - 30)
    lesion = np.broadcast_to(r <= 12, shape)
    image = np.full(shape, 100.0, dtype=np.float32)
    image[lesion] = np.broadcast_to(300 - 150 * r / 12, shape)[lesion]  # 300 at the centre, 150 at the edge
    body = np.broadcast_to(r <= 25, shape)
    grown = _grow(image, (1, 30, 30), 300.0, body.copy(), body, 100.0, 0.6 * body.sum())
    assert grown.sum() > 0.85 * lesion.sum() and not (grown & ~lesion).any()
    first_threshold = np.broadcast_to(image[1] >= 200, shape)  # what the seed's level alone gives
    assert first_threshold.sum() < 0.5 * lesion.sum()


def test_region_growing_confines_a_flood_to_the_body_before_raising_the_threshold() -> None:
    """A lesion touching a bright ring around the body (a cortex or a vessel brighter than marrow):
    growth within the margin floods the ring; confined (here to the body) it keeps the whole graded
    lesion at the same threshold, where raising the threshold would have cut it."""
    from pipeline.region_growing import _grow

    shape = (3, 80, 80)
    yy, xx = np.mgrid[0:80, 0:80]
    r = np.hypot(yy - 40, xx - 40)
    body = np.broadcast_to(r <= 20, shape)
    ring = np.broadcast_to((r > 20) & (r <= 28), shape)
    lesion = np.broadcast_to(np.hypot(yy - 40, xx - 52) <= 8, shape) & body
    image = np.full(shape, 100.0, dtype=np.float32)
    image[ring] = 260.0
    d = np.broadcast_to(np.hypot(yy - 40, xx - 52), shape)
    image[lesion] = 250.0 - 9.0 * d[lesion]  # 250 at its centre, 178 at its edge
    allowed = np.broadcast_to(r <= 28, shape).copy()
    grown = _grow(image, (1, 40, 52), 250.0, allowed, body, 100.0, 0.6 * body.sum())
    assert np.array_equal(grown, lesion)
    assert (image[lesion] < 100 + 0.65 * 150).any()  # a threshold raised to 65 % would have cut it


def test_region_growing_never_grows_an_empty_region() -> None:
    """A seed barely above marrow (1.12 x): the level's floor (1.3 x) puts the threshold above the
    seed itself. The threshold is capped at the seed's value: its region holds the seed, and a seed
    never comes back (study-level: every seed reported has its lesion)."""
    from pipeline.region_growing import _grow

    shape = (3, 40, 40)
    image = np.full(shape, 100.0, dtype=np.float32)
    image[1, 18:23, 18:23] = 112.0
    body = np.ones(shape, dtype=bool)
    grown = _grow(image, (1, 20, 20), 112.0, body.copy(), body, 100.0, 0.6 * body.sum())
    assert grown[1, 20, 20] and grown.sum() == 25


def test_region_growing_never_takes_a_lesions_level_below_1_3_x_marrow() -> None:
    """A weak lesion (1.5 x marrow) in a faint halo (1.26 x) beside marrow that is slightly bright
    there (1.14 x): the halo's median must not drag the threshold into that marrow. The level
    stays >= 1.3 x marrow (the specification's weakest lesion), so the threshold stays above 1.15 x."""
    from pipeline.region_growing import _grow

    shape = (3, 80, 80)
    yy, xx = np.mgrid[0:80, 0:80]
    r = np.hypot(yy - 40, xx - 40)
    body = np.broadcast_to(r <= 36, shape)
    image = np.full(shape, 100.0, dtype=np.float32)
    image[np.broadcast_to((xx >= 40) & (r <= 36), shape)] = 114.0  # slightly bright marrow, a half body
    halo = np.broadcast_to(np.hypot(yy - 40, xx - 40) <= 12, shape)
    image[halo] = 126.0
    image[np.broadcast_to(np.hypot(yy - 40, xx - 40) <= 6, shape)] = 150.0
    grown = _grow(image, (1, 40, 40), 150.0, body.copy(), body, 100.0, 0.6 * body.sum())
    assert np.array_equal(grown, halo)


def test_candidate_region_in_the_box_is_that_of_whole_slices() -> None:
    """Steps C-D run in the expanded region's bounding box: the same candidate region as the
    watershed of every whole slice with the gradient quantised on the same scale (a 512 x 512
    classic study and a 256 x 192 randomised one)."""
    from scipy import ndimage

    from phantom.randomised import generate_randomised
    from pipeline.anatomy import ellipse_mask, in_plane_box, locate_body
    from pipeline.region_growing import _partitions, candidate_region

    study = generate_study(910003, matrix=(512, 512))
    randomised = generate_randomised(800001, matrix=(256, 192))
    for image, px in ((study.pixels[0], study.params.pixel_spacing_mm),
                      (randomised.pixels[0], float(randomised.meta["pixel_mm"]))):
        image = image.astype(np.float32)
        smooth = ndimage.gaussian_filter(image, (0, max(0.5, 0.6 / px), max(0.5, 0.6 / px)))
        body = locate_body(image, smooth, (px, px))
        expanded = ellipse_mask(image.shape[1:], body.centre, tuple(a * np.sqrt(5.0) for a in body.semi_axes))
        _, rows, cols = in_plane_box(expanded, pad=8)
        whole = np.zeros(image.shape, dtype=bool)
        for k in range(image.shape[0]):
            scale = float(ndimage.gaussian_gradient_magnitude(smooth[k, rows, cols], sigma=1.0).max())
            labels = _partitions(smooth[k], expanded, px, scale=scale)
            for label in range(1, labels.max() + 1):
                part = labels == label
                if body.mask[k][part].sum() >= 0.5 * part.sum():
                    whole[k] |= part
        boxed = candidate_region(smooth, body, expanded, px)
        assert np.array_equal(boxed, whole | body.mask)
        assert boxed.sum() > body.mask.sum()  # partitions beyond the body were kept


def test_enhancement_image_is_the_post_contrast_peak_minus_the_pre_contrast_phase() -> None:
    """Step H's image: None for a single-phase series; for a dynamic one, per voxel the peak over
    phases 2.. minus phase 1, never below 0 (a voxel darker after contrast is noise or motion)."""
    from pipeline.region_growing import enhancement_image

    single = np.ones((1, 2, 3, 3), dtype=np.uint16)
    assert enhancement_image(single) is None
    pixels = np.zeros((3, 1, 1, 3), dtype=np.uint16)
    pixels[:, 0, 0] = [[100, 100, 100],   # pre-contrast
                       [150, 90, 300],
                       [120, 80, 500]]
    assert enhancement_image(pixels)[0, 0].tolist() == [50.0, 0.0, 400.0]  # unsigned: no wrap-around
    with pytest.raises(ValueError, match="phases, slices, rows, cols"):
        enhancement_image(pixels[0])


def test_on_an_enhancement_a_region_leaking_out_of_the_body_is_confined_not_dropped() -> None:
    """A lesion at the edge of the body beside muscle that enhances as much (a dynamic series'
    enhancement: bone and disc drop out of it, muscle does not). Grown within the margin, most of
    the region is muscle outside the body, and region growing would drop it; with ``body`` given
    (on the enhancement) it is grown again within the candidate region: the lesion exactly."""
    from pipeline.region_growing import _grow

    shape = (3, 80, 80)
    yy, xx = np.mgrid[0:80, 0:80]
    r = np.hypot(yy - 40, xx - 40)
    body = np.broadcast_to(r <= 20, shape)
    muscle = np.broadcast_to((r > 20) & (r <= 28) & (xx >= 52), shape)
    lesion = np.broadcast_to(np.hypot(yy - 40, xx - 52) <= 8, shape) & body
    image = np.full(shape, 100.0, dtype=np.float32)
    image[muscle] = 240.0
    image[lesion] = 250.0
    allowed = np.broadcast_to(r <= 28, shape).copy()
    leaked = _grow(image, (1, 40, 52), 250.0, allowed, body, 100.0, 0.6 * body.sum())
    assert (leaked & body).sum() < 0.5 * leaked.sum()  # what a single image's growth keeps (then drops)
    confined = _grow(image, (1, 40, 52), 250.0, allowed, body, 100.0, 0.6 * body.sum(), body)
    assert np.array_equal(confined, lesion)


def test_region_growing_on_a_dynamic_series_grows_on_the_enhancement() -> None:
    """Randomised dynamic study 905032 (3 phases, a primary tumour): on the peak image a bright
    non-enhancing structure takes the seed and region growing finds almost none of the lesion
    (Dice 0.12); on the enhancement, where bone and disc drop out, it finds it (0.95). The body and
    the marrow level returned are the peak image's either way."""
    from phantom.randomised import generate_randomised
    from pipeline.region_growing import enhancement_image

    r = generate_randomised(905032, phases=3)
    px = float(r.meta["pixel_mm"])
    peak = r.pixels[1:].max(axis=0).astype(np.float32)
    on_peak = segment(peak, (px, px))
    on_enhancement = segment(peak, (px, px), enhancement_image(r.pixels))
    assert segmentation_scores(on_peak.mask, r.mask)["dice"] < 0.3
    assert segmentation_scores(on_enhancement.mask, r.mask)["dice"] > 0.9
    assert np.array_equal(on_enhancement.body.mask, on_peak.body.mask)
    assert on_enhancement.marrow_level == on_peak.marrow_level


def test_region_growing_confines_a_leaking_region_on_an_enhancement_only() -> None:
    """Step H's confinement, both ways. Randomised dynamic study 905030 (3 phases, a primary): on
    the enhancement its lesion's region leaks into enhancing muscle; dropped, region growing kept
    only a quarter of the lesion (Dice 0.24), confined it keeps most (0.60). Single-phase randomised
    study 800002: the brightest seed lies on a disc's nucleus (6.3 x marrow), whose region lies
    mostly outside the body and is dropped, and the lesion is found (0.61); confined like a leak,
    the disc would have become the first lesion and set a level that the real one, half as bright,
    does not reach (0.002)."""
    from phantom.randomised import generate_randomised
    from pipeline.region_growing import enhancement_image

    dynamic = generate_randomised(905030, phases=3)
    px = float(dynamic.meta["pixel_mm"])
    peak = dynamic.pixels[1:].max(axis=0).astype(np.float32)
    grown = segment(peak, (px, px), enhancement_image(dynamic.pixels))
    assert segmentation_scores(grown.mask, dynamic.mask)["dice"] > 0.5
    single = generate_randomised(800002)
    px = float(single.meta["pixel_mm"])
    grown = segment(single.pixels[0].astype(np.float32), (px, px))
    assert segmentation_scores(grown.mask, single.mask)["dice"] > 0.5


def test_the_node_grows_a_dynamic_series_on_its_enhancement() -> None:
    """``pipeline.analyse`` passes a dynamic series' enhancement to region growing: randomised study
    905032 (3 phases) loaded as the node loads it, region growing's Dice 0.95 (0.12 on the peak)."""
    from pipeline.analysis import analyse
    from training.classifier_data import randomised_items

    _, volume, truth, _ = next(iter(randomised_items([905032], phases=3)))
    analysis = analyse(volume, use_radiomics=False, use_classifier=False)
    assert segmentation_scores(analysis.region_growing.mask, truth)["dice"] > 0.9


def test_a_dynamic_series_without_uptake_gets_no_coded_diagnosis() -> None:
    """Contrast that never arrived (a failed injection): every post-contrast phase is the
    pre-contrast one plus 2 % noise. Region growing on the enhancement has only noise to grow on,
    the U-Net on the peak image outlines something else, and the finding is indeterminate."""
    from dataclasses import replace

    from pipeline.analysis import analyse
    from pipeline.plausibility import IndeterminateReason
    from training.classifier_data import look_items

    _, volume, _, _ = next(iter(look_items("classic", [915003], dynamic_fraction=1.0)))
    pixels = volume.pixels.copy()
    rng = np.random.default_rng(0)
    noise = 0.02 * float(np.median(pixels[0][pixels[0] > 0]))
    pixels[1:] = pixels[0] + rng.normal(0, noise, pixels[1:].shape)
    analysis = analyse(replace(volume, pixels=pixels.astype(np.float32)))
    assert analysis.verdict is not None and analysis.verdict.indeterminate
    assert IndeterminateReason.SEGMENTATIONS_DISAGREE in analysis.verdict.reasons


def test_region_growing_refuses_an_enhancement_of_another_shape() -> None:
    image = np.zeros((3, 20, 20), dtype=np.float32)
    with pytest.raises(ValueError, match="enhancement shape"):
        segment(image, (1.0, 1.0), np.zeros((3, 20, 21), dtype=np.float32))
