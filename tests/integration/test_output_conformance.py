"""What PACS teams and viewers check in the node's outputs: IHE AI Results (AIR) Processing
Algorithm items, TID 1410 planar measurements a viewer can draw, segment colours; checked with
dciodvfy, dcmtk's dsrdump and highdicom reading everything back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from models.weights import sha256_file
from pipeline.analysis import Analysis, analyse
from pipeline.outputs.build import build_abstention, build_results, source_headers
from pipeline.outputs.colours import RG_RGB, UNET_RGB
from pipeline.outputs.identity import PROCESSING_ALGORITHM, Algorithm, ResultIdentity
from pipeline.outputs.sr import BIDIRECTIONAL_TRACKING
from pipeline.reasons import Reason
from pipeline.volume import load_series
from tests.conftest import REPO, require_tool
from tests.dciodvfy import dataset_errors
from tests.integration.test_conformance_statement import scu_table_matches

WEIGHTS = REPO / "models" / "weights"


@pytest.fixture(scope="module")
def analysed(phantom_dir: Path) -> tuple[Analysis, list[pydicom.Dataset]]:
    analysis = analyse(load_series(sorted((phantom_dir / "study_101" / "series").glob("*.dcm"))))
    return analysis, build_results(analysis)


def algorithm_items(ds: pydicom.Dataset) -> dict[str, pydicom.Dataset]:
    items = [i for i in ds.ContributingEquipmentSequence
             if i.PurposeOfReferenceCodeSequence[0].CodeValue == PROCESSING_ALGORITHM.value]
    for item in items:
        code = item.PurposeOfReferenceCodeSequence[0]
        assert (code.CodingSchemeDesignator, code.CodeMeaning) == ("99IHE", "Processing Algorithm")
    return {str(i.ManufacturerModelName): i for i in items}


def written(ds: pydicom.Dataset, folder: Path) -> Path:
    assert dataset_errors(ds, folder) == [], ds.SOPClassUID  # dciodvfy: 0 errors (it also writes the file)
    return folder / f"{ds.SOPInstanceUID}.dcm"


def test_every_output_names_each_algorithm_with_a_device_uid_from_its_weights(analysed, tmp_path) -> None:  # noqa: ANN001
    analysis, outputs = analysed
    expected = {"spinenode spine localiser": sha256_file(WEIGHTS / "spine.pt"),
                "spinenode region growing": None,
                "spinenode improved U-Net": sha256_file(WEIGHTS / "unet.pt"),
                "spinenode radiomics signature": sha256_file(WEIGHTS / "radiomics_single.json"),
                "spinenode 3D classifier": sha256_file(WEIGHTS / "classifier.pt")}
    assert analysis.radiomics is not None and analysis.classification is not None  # all five contributed
    for ds in outputs:
        items = algorithm_items(pydicom.dcmread(written(ds, tmp_path)))
        assert set(items) == set(expected), ds.SOPClassUID
        for name, checksum in expected.items():
            item = items[name]
            assert item.Manufacturer == "spinenode project" and item.ContributionDescription
            assert item.DeviceUID == Algorithm(name, "", checksum).device_uid
            if checksum:
                assert item.SoftwareVersions == f"sha256 {checksum[:16]}"
        # highdicom's own item (the library that wrote the object) stays beside them
        purposes = {i.PurposeOfReferenceCodeSequence[0].CodeValue for i in ds.ContributingEquipmentSequence}
        assert "109102" in purposes or str(ds.SOPClassUID) == "1.2.840.10008.5.1.4.1.1.7"


def test_the_outputs_are_sent_as_the_conformance_statement_says(analysed, tmp_path) -> None:  # noqa: ANN001
    _, outputs = analysed
    scu_table_matches([pydicom.dcmread(written(ds, tmp_path)) for ds in outputs])


def test_a_new_weights_file_gives_a_new_device_uid(tmp_path: Path) -> None:
    shipped = WEIGHTS / "unet.pt"
    retrained = tmp_path / "unet.pt"
    retrained.write_bytes(shipped.read_bytes()[:-1] + bytes([shipped.read_bytes()[-1] ^ 1]))
    old = ResultIdentity(source_series_uid="1.2.3", unet_sha256=sha256_file(shipped), analysed=True)
    new = ResultIdentity(source_series_uid="1.2.3", unet_sha256=sha256_file(retrained), analysed=True)
    uids = [{a.model_name: a.device_uid for a in identity.algorithms} for identity in (old, new)]
    assert uids[0]["spinenode improved U-Net"] != uids[1]["spinenode improved U-Net"]
    assert uids[0]["spinenode region growing"] == uids[1]["spinenode region growing"]  # unchanged method
    assert old.uid("seg", "instance") != new.uid("seg", "instance")  # and the outputs get new UIDs


def test_an_abstention_names_the_input_checks(phantom_dir: Path, tmp_path: Path) -> None:
    files = sorted((phantom_dir / "study_103" / "series").glob("*.dcm"))[:11]
    sr = build_abstention([pydicom.dcmread(f, stop_before_pixels=True) for f in files], [Reason.SLICE_COUNT])
    assert set(algorithm_items(pydicom.dcmread(written(sr, tmp_path)))) == {"spinenode input checks"}


def drawn_length(points: np.ndarray, image: pydicom.Dataset) -> float:
    """What a viewer draws: SCOORD (column, row) points times Pixel Spacing (row, column)."""
    (c0, r0), (c1, r1) = points
    row_mm, col_mm = (float(v) for v in image.PixelSpacing)
    return float(np.hypot((c1 - c0) * col_mm, (r1 - r0) * row_mm))


def referenced_uid(scoord: pydicom.Dataset) -> str:
    return str(scoord.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)


def test_each_lesion_has_an_outline_and_axes_a_viewer_can_draw(analysed, tmp_path) -> None:  # noqa: ANN001
    analysis, (_, sr_ds, _) = analysed
    sr = hd.sr.srread(written(sr_ds, tmp_path))
    volumetric = {g.tracking_identifier: g for g in sr.content.get_volumetric_roi_measurement_groups()}
    outlines = {g.tracking_identifier: g for g in sr.content.get_planar_roi_measurement_groups()}
    axes = {g.tracking_identifier.rsplit(":", 1)[-1]: g for g in sr.content.get_image_measurement_groups()
            if g.tracking_identifier.startswith(BIDIRECTIONAL_TRACKING + ":")}
    source = source_headers(analysis.volume)
    assert set(volumetric) == set(outlines) == set(axes) == {f"Lesion {les.index}" for les in analysis.lesions}
    for lesion in analysis.lesions:
        name, image = f"Lesion {lesion.index}", source[lesion.largest_slice]
        # the outline is the same finding as the volumetric group: one tracking UID; the axes have their own
        assert outlines[name].tracking_uid == volumetric[name].tracking_uid != axes[name].tracking_uid
        region = outlines[name].roi
        assert region is not None and region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        assert referenced_uid(region) == image.SOPInstanceUID
        outline = region.value
        assert np.array_equal(outline[0], outline[-1]) and len(outline) > 4
        rows, cols = np.nonzero(lesion.mask[lesion.largest_slice])
        assert cols.min() <= outline[:, 0].min() + 0.5 and outline[:, 0].max() - 0.5 <= cols.max() + 1
        assert rows.min() <= outline[:, 1].min() + 0.5 and outline[:, 1].max() - 0.5 <= rows.max() + 1
        lengths = {}
        for measurement in axes[name].get_measurements():
            assert measurement.name.meaning in ("Long Axis", "Short Axis")  # what dcmjs/OHIF match
            assert measurement.unit == codes.UCUM.Millimeter
            (scoord,) = measurement.referenced_coordinates
            assert scoord.graphic_type == hd.sr.GraphicTypeValues.POLYLINE and len(scoord.value) == 2
            assert referenced_uid(scoord) == image.SOPInstanceUID
            assert drawn_length(scoord.value, image) == pytest.approx(measurement.value, abs=0.05)
            lengths[measurement.name.meaning] = measurement.value
        assert 0 < lengths["Long Axis"] <= lesion.max_diameter_mm + 0.5  # in-plane: never above the 3D diameter
        assert lengths.get("Short Axis", 0) <= lengths["Long Axis"]


def test_dsrdump_renders_the_report(analysed, tmp_path) -> None:  # noqa: ANN001
    _, (_, sr_ds, _) = analysed
    run = subprocess.run([require_tool("dsrdump"), str(written(sr_ds, tmp_path))], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert "Imaging Measurement Report" in run.stdout
    assert 'NUM:(,,"Long Axis")=' in run.stdout and 'inferred from SCOORD:(,,"Source")=(POLYLINE,' in run.stdout
    assert "SCOORD:(,,\"Image Region\")=(POLYLINE," in run.stdout
    assert '(,,"Image Library")' in run.stdout  # TID 1600: the images the measurements were made on


def test_segments_carry_the_key_images_colours(analysed, tmp_path) -> None:  # noqa: ANN001
    _, (seg_ds, _, _) = analysed
    seg = hd.seg.segread(written(seg_ds, tmp_path))
    colours = {d.segment_label: hd.color.CIELabColor.from_dicom_value(d.RecommendedDisplayCIELabValue)
               for d in map(seg.get_segment_description, seg.segment_numbers)}
    assert colours["Lesion (U-Net)"].value == hd.color.CIELabColor.from_rgb(*UNET_RGB).value
    assert colours["Lesion (region growing)"].value == hd.color.CIELabColor.from_rgb(*RG_RGB).value
    rgb = {label: np.array(c.to_rgb(), dtype=float) for label, c in colours.items()}
    assert np.abs(rgb["Lesion (U-Net)"] - rgb["Lesion (region growing)"]).max() > 100  # two distinct colours


def dcmqi_tool(name: str) -> str:
    """A dcmqi command-line reader from the pip package (the test extra installs it)."""
    import shutil
    import sys

    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is missing: scripts/install.sh --test installs dcmqi"
    return found


def test_dcmqi_reads_the_report_with_the_same_values(analysed, tmp_path) -> None:  # noqa: ANN001
    import json

    analysis, (_, sr_ds, _) = analysed
    out = tmp_path / "sr.json"
    run = subprocess.run([dcmqi_tool("tid1500reader"), "--inputDICOM", str(written(sr_ds, tmp_path)),
                          "--outputMetadata", str(out)], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    groups = json.loads(out.read_text())["Measurements"]
    values: dict[str, dict[str, float]] = {}  # the groups of one tracked finding, merged
    for group in groups:
        values.setdefault(group["TrackingIdentifier"], {}).update(
            {i["quantity"]["CodeMeaning"]: float(i["value"]) for i in group["measurementItems"]})
    largest = analysis.lesions[0]
    assert values["Lesion 1"]["Volume"] == round(largest.volume_mm3, 1)
    assert values["Lesion 1"]["Diameter"] == round(largest.max_diameter_mm, 1)
    axes = values[f"{BIDIRECTIONAL_TRACKING}:Lesion 1"]
    assert 0 < axes["Long Axis"] <= values["Lesion 1"]["Diameter"] + 0.5
    assert {g.get("segmentationSOPInstanceUID") for g in groups} == {None, str(analysed[1][0].SOPInstanceUID)}
    assert "Area" in values["Lesion 1"] and "3D classifier probability of spinal metastasis" in values["Lesion 1"]


def test_dcmqi_reads_the_segmentation_without_warnings(analysed, tmp_path) -> None:  # noqa: ANN001
    import json

    seg_ds = analysed[1][0]
    out = tmp_path / "seg"
    out.mkdir()
    run = subprocess.run([dcmqi_tool("segimage2itkimage"), "--inputDICOM", str(written(seg_ds, tmp_path)),
                          "--outputDirectory", str(out)], capture_output=True, text=True, timeout=120, check=False)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert not [line for line in log.splitlines() if line.startswith(("W:", "E:")) or "Failed" in line], log
    meta = json.loads((out / "meta.json").read_text())
    segments = [s for group in meta["segmentAttributes"] for s in group]
    assert [s["SegmentLabel"] for s in segments] == ["Lesion (U-Net)", "Lesion (region growing)"]
    assert all("recommendedDisplayRGBValue" in s for s in segments)
    assert len(list(out.glob("*.nrrd"))) == 2


def report_values(sr: hd.sr.Comprehensive3DSR) -> dict[str, dict[str, float]]:
    """Every number of the report by its group's tracking identifier and the concept's meaning."""
    values: dict[str, dict[str, float]] = {}
    groups = [*sr.content.get_volumetric_roi_measurement_groups(), *sr.content.get_planar_roi_measurement_groups(),
              *sr.content.get_image_measurement_groups()]
    for group in groups:
        for m in group.get_measurements():
            key = group.tracking_identifier.rsplit(":", 1)[-1]
            assert m.name.meaning not in values.get(key, {}), f"{m.name.meaning} twice for {key}"
            values.setdefault(key, {})[m.name.meaning] = float(m.value)
    return values


def test_every_number_in_the_report_is_the_analysis_number(analysed, tmp_path) -> None:  # noqa: ANN001
    """Each value compared with what the analysis computed (and nothing reported that it did not)."""
    from pipeline.planar import measure_planar

    analysis, (_, sr_ds, _) = analysed
    values = report_values(hd.sr.srread(written(sr_ds, tmp_path)))
    source = source_headers(analysis.volume)
    assert set(values) == {f"Lesion {les.index}" for les in analysis.lesions}  # the lesion count
    for lesion in analysis.lesions:
        planar = measure_planar(lesion.mask[lesion.largest_slice], tuple(source[lesion.largest_slice].PixelSpacing))
        expected = {"Volume": round(lesion.volume_mm3, 1), "Diameter": round(lesion.max_diameter_mm, 1),
                    "Mean enhancement ratio to normal marrow": round(lesion.mean_enhancement, 3),
                    "Peak enhancement ratio to normal marrow": round(lesion.peak_enhancement, 3),
                    "Area": round(planar.area_mm2, 1), "Long Axis": round(planar.long_axis_mm, 1),
                    "Short Axis": round(planar.short_axis_mm or 0, 1)}
        if lesion.index == analysis.classification.lesion_index:
            expected |= {"3D classifier probability of spinal metastasis":
                         round(analysis.classification.probability_metastasis, 4),
                         "Dice agreement of U-Net and region growing": round(analysis.agreement_dice, 4),
                         "Overlap coefficient of U-Net and region growing": round(analysis.agreement_overlap, 4),
                         "Radiomics score (Rad-score)": analysis.radiomics["rad_score"],
                         "Radiomics model probability of spinal metastasis":
                         analysis.radiomics["probability_metastasis"]}
        assert values[f"Lesion {lesion.index}"] == pytest.approx(expected, abs=1e-9)


def test_a_lesion_of_known_volume_is_reported_with_that_volume(phantom_dir: Path, tmp_path: Path) -> None:
    """The phantom's own lesion mask (its truth SEG) through lesions, SR builder and highdicom's
    reader: the volume is the truth's voxel count times the voxel volume, to the report's 0.1 mm3."""
    from dataclasses import replace

    from phantom.writer import read_truth
    from pipeline.lesions import find_lesions

    study = phantom_dir / "study_102"
    volume = load_series(sorted((study / "series").glob("*.dcm")))
    analysis = analyse(volume, use_unet=False)
    truth_seg = hd.seg.segread(study / "seg.dcm")
    uids = [str(ds.SOPInstanceUID) for ds in source_headers(volume)]
    truth = truth_seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1],
                                                    assert_missing_frames_are_empty=True)[..., 0].astype(bool)
    assert int(truth.sum()) == read_truth(study)["mask_voxels"] > 0
    lesions = find_lesions(truth, volume, analysis.image, analysis.region_growing.marrow_level, min_volume_mm3=0)
    seg, sr_ds, _ = build_results(replace(analysis, lesions=lesions, classification=None, verdict=None))
    values = report_values(hd.sr.srread(written(sr_ds, tmp_path)))
    voxel_mm3 = float(np.prod(volume.spacing))
    reported = sum(values[f"Lesion {les.index}"]["Volume"] for les in lesions)
    assert reported == pytest.approx(int(truth.sum()) * voxel_mm3, abs=0.05 * len(lesions))


def test_a_lesion_only_region_growing_found_is_reported_as_indeterminate(phantom_dir: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """When the U-Net finds nothing in the body (it missed a 65-voxel metastasis of the external
    validation set) but region growing finds a lesion, that lesion is measured on region growing's
    segment (SEG segment 2) and the finding is indeterminate, instead of "no lesion"."""
    import pipeline.analysis
    from pipeline.plausibility import IndeterminateReason

    real = pipeline.analysis.unet_segment
    marrows: list[float] = []

    def missed(image, body, marrow, pixel_mm, precision):  # noqa: ANN001, ANN202 - the U-Net's signature
        marrows.append(marrow)
        mask, sha = real(image, body, marrow, pixel_mm, precision)
        return np.zeros_like(mask), sha

    monkeypatch.setattr(pipeline.analysis, "unet_segment", missed)
    analysis = analyse(load_series(sorted((phantom_dir / "study_101" / "series").glob("*.dcm"))))
    assert analysis.lesion_source == "region_growing" and analysis.lesions
    assert marrows == [analysis.region_growing.marrow_level]  # the U-Net's input scale: marrow in the body
    assert analysis.agreement_dice == 0.0 and analysis.agreement_overlap == 0.0
    assert analysis.verdict is not None and analysis.verdict.indeterminate
    assert IndeterminateReason.SEGMENTATIONS_DISAGREE in analysis.verdict.reasons
    seg, sr_ds, key = build_results(analysis)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Lesion (U-Net)", "Lesion (region growing)"]
    sr = hd.sr.srread(written(sr_ds, tmp_path))
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == len(analysis.lesions)
    assert all(list(g.referenced_segment.referenced_segment_numbers) == [2] for g in groups)
    written(seg, tmp_path)
    assert "indeterminate" in str(key.ImageComments)
