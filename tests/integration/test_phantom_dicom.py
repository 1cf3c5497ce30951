"""The phantom as DICOM: bytes, dciodvfy, geometry, the ground-truth SEG, compressed syntaxes."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from phantom import generate_study, write_study
from pipeline.volume import load_series
from tests.dciodvfy import dciodvfy_errors


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_study(generate_study(42, phases=3, matrix=(256, 192)), tmp_path / "a")
    b = write_study(generate_study(42, phases=3, matrix=(256, 192)), tmp_path / "b")
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_series_and_seg_pass_dciodvfy(phantom_dir: Path) -> None:
    study = phantom_dir / "study_101"
    files = sorted((study / "series").glob("*.dcm"))
    for path in (files[0], files[6], study / "seg.dcm"):
        assert dciodvfy_errors(path) == [], path


def test_dynamic_series_passes_dciodvfy(tmp_path: Path) -> None:
    folder = write_study(generate_study(7, phases=4, matrix=(256, 256)), tmp_path)
    files = sorted((folder / "series").glob("*.dcm"))
    assert len(files) == 48
    for path in (files[0], files[-1], folder / "seg.dcm"):
        assert dciodvfy_errors(path) == [], path
    times = [pydicom.dcmread(f, stop_before_pixels=True) for f in files[::12]]
    assert [int(t.TemporalPositionIdentifier) for t in times] == [1, 2, 3, 4]
    assert all(int(t.NumberOfTemporalPositions) == 4 for t in times)
    assert [t.AcquisitionTime for t in times] == sorted(t.AcquisitionTime for t in times)
    assert "TriggerTime" not in times[0]


def test_geometry_is_contiguous_and_consistent(phantom_dir: Path) -> None:
    datasets = [pydicom.dcmread(f, stop_before_pixels=True)
                for f in sorted((phantom_dir / "study_102" / "series").glob("*.dcm"))]
    orient = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orient[:3], orient[3:])
    assert np.degrees(np.arccos(abs(normal[2]))) <= 15.0 + 1e-6
    dists = sorted(float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)) for d in datasets)
    assert np.allclose(np.diff(dists), 3.0, atol=1e-4)
    for d in datasets:
        assert np.allclose(np.array(d.ImageOrientationPatient, dtype=float), orient)
        assert float(d.SliceThickness) == 3.0 and d.Modality == "MR" and d.MRAcquisitionType == "3D"
        assert d.ContrastBolusAgent and d.ScanningSequence == "GR"
    assert [int(d.InstanceNumber) for d in datasets] == list(range(1, 13))


def test_seg_reads_back_and_matches_the_mask_frame_by_frame(phantom_dir: Path) -> None:
    study = generate_study(103, matrix=(256, 256))
    seg = hd.seg.segread(phantom_dir / "study_103" / "seg.dcm")
    series = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f
              for f in (phantom_dir / "study_103" / "series").glob("*.dcm")}
    uids = [pydicom.dcmread(series[u], stop_before_pixels=True) for u in series]
    order = sorted(uids, key=lambda d: int(d.InstanceNumber))
    mask = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[d.SOPInstanceUID for d in order], segment_numbers=[1],
        assert_missing_frames_are_empty=True)[..., 0]
    assert mask.shape == study.mask.shape
    for k in range(mask.shape[0]):  # frame k is slice k, empty frames included
        assert np.array_equal(mask[k].astype(bool), study.mask[k]), k
    assert seg.get_segment_description(1).segment_label.startswith("Lesion")


@pytest.mark.parametrize("syntax", ["jpegls", "j2k", "rle"])
def test_compressed_series_decode_to_the_same_pixels(tmp_path: Path, syntax: str) -> None:
    study = generate_study(9, matrix=(256, 192))
    folder = write_study(study, tmp_path, transfer_syntax=syntax)
    files = sorted((folder / "series").glob("*.dcm"))
    assert dciodvfy_errors(files[0]) == []
    volume = load_series(files)
    assert np.array_equal(volume.pixels[0].astype(np.uint16), study.pixels[0])


def test_synth_cli_writes_studies_and_preview(tmp_path: Path) -> None:
    from dicomnode.cli import main

    assert main(["synth", "--out", str(tmp_path), "--studies", "2", "--seed", "50",
                 "--matrix", "256x256", "--label", "primary", "--preview", "--phases", "3-5"]) == 0
    for seed in (50, 51):
        folder = tmp_path / f"study_{seed}"
        assert (folder / "preview.png").stat().st_size > 1000
        truth = (folder / "truth.json").read_text()
        assert '"label_name": "primary"' in truth
        assert 36 <= len(list((folder / "series").glob("*.dcm"))) <= 60
