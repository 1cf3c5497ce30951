"""Writes a phantom study as a scanner and a labeller would: MR series, ground-truth SEG, JSON.

Everything is derived from the study's seed (UIDs, dates, times), so the same seed gives the
same bytes. Folder layout per study::

    study_<seed>/series/IM_0001.dcm ...   the MR Image Storage series (12 x phases files)
    study_<seed>/seg.dcm                  DICOM Segmentation of the lesion mask
    study_<seed>/truth.json               label, lesion count, generator parameters
    study_<seed>/preview.png              optional montage with the mask outline
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
)

from phantom.generator import PhantomStudy
from phantom.params import SLICE_THICKNESS_MM, SLICES_PER_PHASE
from pipeline.reproducible import pin_generated_values
from pipeline.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, derived_uid

TRANSFER_SYNTAXES = {
    "explicit": ExplicitVRLittleEndian,
    "jpegls": JPEGLSLossless,
    "j2k": JPEG2000Lossless,
    "rle": RLELossless,
}
MANUFACTURER = "spinenode phantom"
_BASE_DATE = dt.datetime(2026, 1, 5, 8, 0, 0)


@dataclass(frozen=True)
class Geometry:
    """Slice geometry of one phase: orientation cosines and the position of each slice."""

    orientation: tuple[float, ...]  # row cosines then column cosines (ImageOrientationPatient)
    positions: np.ndarray  # (slices, 3) ImagePositionPatient, mm
    pixel_spacing: float


def geometry(study: PhantomStudy) -> Geometry:
    """Oblique axial planning: rows along patient x, columns tilted about x by the study's tilt."""
    p = study.params
    tilt = np.deg2rad(p.tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(tilt), np.sin(tilt)])
    normal = np.cross(row, col)
    ps = p.pixel_spacing_mm
    # first pixel so that the image centre sits on the table axis, 60 mm above the isocentre
    centre = np.array([0.0, 0.0, 60.0])
    corner = centre - row * ps * (p.columns - 1) / 2 - col * ps * (p.rows - 1) / 2
    offsets = (np.arange(SLICES_PER_PHASE) - (SLICES_PER_PHASE - 1) / 2) * SLICE_THICKNESS_MM
    positions = corner[None, :] + offsets[:, None] * normal[None, :]
    return Geometry(tuple(float(v) for v in (*row, *col)), positions, ps)


def _uid(seed: int, *parts: object) -> str:
    return derived_uid("spinenode-phantom", seed, *parts)


def _ds_round(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".")


def _mr_dataset(
    study: PhantomStudy, geo: Geometry, phase: int, k: int, when: dt.datetime, window_hi: float
) -> Dataset:
    """One MR image: slice ``k`` of ``phase``, acquired at ``when``."""
    p = study.params
    ds = Dataset()
    _set_identity(ds, study, phase, k, when)
    _set_acquisition(ds)
    _set_position(ds, study, geo, phase, k)
    _set_pixels(ds, study.pixels[phase, k], geo, p.rescale_present, window_hi)
    return ds


def _set_identity(ds: Dataset, study: PhantomStudy, phase: int, k: int, when: dt.datetime) -> None:
    """SOP, dates and times, equipment, study, series and patient (all derived from the seed)."""
    p = study.params
    seed = p.seed
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = _uid(seed, "mr", phase, k)
    study_dt = _BASE_DATE + dt.timedelta(days=seed % 300, minutes=seed % 480)
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_dt.strftime("%Y%m%d")
    ds.StudyTime = study_dt.strftime("%H%M%S")
    ds.SeriesTime = (study_dt + dt.timedelta(minutes=12)).strftime("%H%M%S")
    ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S.%f")[:13]
    ds.AccessionNumber = f"PH{seed:08d}"
    ds.Modality = "MR"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "synthetic VIBE"
    ds.SoftwareVersions = "1"
    ds.InstitutionName = "Phantom Hospital"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "MR SPINE WITH CONTRAST"
    ds.SeriesDescription = "t1_vibe_fs_tra_post" if p.phases == 1 else "t1_vibe_fs_tra_dyn"
    ds.PatientName = f"PHANTOM^SPINE{seed}"
    ds.PatientID = f"PH{seed:08d}"
    ds.PatientBirthDate = f"1919{1 + seed % 12:02d}{1 + seed % 28:02d}"  # 1919: easy to spot in a log
    ds.PatientSex = "F" if seed % 2 else "M"
    ds.BodyPartExamined = "SPINE"


def _set_acquisition(ds: Dataset) -> None:
    """Contrast agent and the fat-saturated 3D gradient-echo (VIBE-like) sequence."""
    ds.ContrastBolusAgent = "Gd-DTPA"
    ds.ContrastBolusRoute = "IV"
    ds.ScanningSequence = "GR"
    ds.SequenceVariant = ["SP", "OSP"]
    ds.ScanOptions = "FS"
    ds.MRAcquisitionType = "3D"
    ds.SequenceName = "*fl3d1"
    ds.SliceThickness = _ds_round(SLICE_THICKNESS_MM)
    ds.SpacingBetweenSlices = _ds_round(SLICE_THICKNESS_MM)
    ds.RepetitionTime = "4.1"
    ds.EchoTime = "1.4"
    ds.EchoTrainLength = 1
    ds.FlipAngle = "10"
    ds.MagneticFieldStrength = "3"
    ds.ImagedNucleus = "1H"
    ds.PatientPosition = "HFS"


def _set_position(ds: Dataset, study: PhantomStudy, geo: Geometry, phase: int, k: int) -> None:
    """Instance UIDs and numbers, the image plane and the temporal position of a dynamic series."""
    p = study.params
    seed = p.seed
    ds.StudyInstanceUID = _uid(seed, "study")
    ds.SeriesInstanceUID = _uid(seed, "series")
    ds.StudyID = "1"
    ds.SeriesNumber = 5
    ds.AcquisitionNumber = phase + 1
    ds.InstanceNumber = phase * SLICES_PER_PHASE + k + 1
    ds.ImagePositionPatient = [_ds_round(v) for v in geo.positions[k]]
    ds.ImageOrientationPatient = [_ds_round(v) for v in geo.orientation]
    ds.FrameOfReferenceUID = _uid(seed, "for")
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = _ds_round(float(geo.positions[k][2]))
    if p.phases > 1:
        ds.TemporalPositionIdentifier = phase + 1
        ds.NumberOfTemporalPositions = p.phases


def _set_pixels(
    ds: Dataset, pixels: np.ndarray, geo: Geometry, rescale_present: bool, window_hi: float
) -> None:
    """Image pixel module, window and (optionally) an identity rescale."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelSpacing = [_ds_round(geo.pixel_spacing)] * 2
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = _ds_round(round(window_hi / 2))
    ds.WindowWidth = _ds_round(round(window_hi))
    if rescale_present:
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = "1"
        ds.RescaleType = "US"
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()


def series_datasets(study: PhantomStudy) -> list[Dataset]:
    """The series as datasets, in InstanceNumber order (phase-major)."""
    geo = geometry(study)
    p = study.params
    interval = p.extra.get("phase_interval_s", 12.0)
    start = _BASE_DATE + dt.timedelta(days=p.seed % 300, minutes=p.seed % 480 + 14)
    out: list[Dataset] = []
    for phase in range(p.phases):
        when = start + dt.timedelta(seconds=phase * interval)
        hi = float(np.percentile(study.pixels[phase][:, ::4, ::4], 99.5))
        out.extend(_mr_dataset(study, geo, phase, k, when, hi) for k in range(SLICES_PER_PHASE))
    return out


def ground_truth_seg(study: PhantomStudy, source: list[Dataset]) -> hd.seg.Segmentation:
    """A BINARY SEG of the lesion mask over the slices of one phase (frame k = slice k)."""
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="Lesion (phantom ground truth)",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        anatomic_regions=[codes.SCT.BoneStructureOfSpine],
    )
    seed = study.params.seed
    seg = hd.seg.Segmentation(
        source_images=source,
        pixel_array=study.mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=_uid(seed, "seg-series"),
        series_number=900,
        sop_instance_uid=_uid(seed, "seg"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name="phantom ground truth",
        software_versions="1",
        device_serial_number="0",
        omit_empty_frames=False,
        series_description="Lesion ground truth (synthetic phantom)",
        content_description="Synthetic phantom ground truth",
        content_label="GROUND_TRUTH",
    )
    # highdicom stamps the wall clock; the phantom must be byte-for-byte reproducible
    pin_generated_values(seg, uid_parts=("spinenode-phantom", seed),
                         date=source[0].StudyDate, time=source[0].StudyTime)
    return seg


def _file_meta(ds: Dataset, transfer_syntax: UID) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


def write_study(
    study: PhantomStudy, out_dir: Path, *, transfer_syntax: str = "explicit", preview: bool = False
) -> Path:
    """Write one study under ``out_dir/study_<seed>/`` and return that folder."""
    if transfer_syntax not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax must be one of {sorted(TRANSFER_SYNTAXES)}, "
                         f"got {transfer_syntax!r}")
    ts = TRANSFER_SYNTAXES[transfer_syntax]
    folder = Path(out_dir) / f"study_{study.params.seed}"
    series_dir = folder / "series"
    series_dir.mkdir(parents=True, exist_ok=True)
    datasets = series_datasets(study)
    # the SEG references the first post-contrast phase (the only one for single-phase series)
    phase = 0 if study.params.phases == 1 else 1
    seg_source = datasets[phase * SLICES_PER_PHASE:(phase + 1) * SLICES_PER_PHASE]
    seg = ground_truth_seg(study, seg_source)
    for ds in datasets:
        ds.file_meta = _file_meta(ds, ExplicitVRLittleEndian)
        if ts != ExplicitVRLittleEndian:
            ds.compress(ts)
        ds.save_as(series_dir / f"IM_{ds.InstanceNumber:04d}.dcm", enforce_file_format=True)
    seg.save_as(folder / "seg.dcm", enforce_file_format=True)
    truth = _truth(study, datasets[0], seg, ts, phase)
    (folder / "truth.json").write_text(json.dumps(truth, indent=2, sort_keys=True) + "\n")
    if preview:
        from phantom.preview import write_preview

        write_preview(study.pixels[phase], study.mask, folder / "preview.png")
    return folder


def _truth(study: PhantomStudy, first: Dataset, seg: hd.seg.Segmentation, ts: UID, phase: int) -> dict:
    """The contents of ``truth.json`` (``phase``: the 0-based phase the SEG references)."""
    p = study.params
    return {
        "seed": p.seed,
        "label": p.label,
        "label_name": p.label_name,
        "lesion_count": len(p.lesions),
        "phases": p.phases,
        "matrix": [p.rows, p.columns],
        "transfer_syntax": str(ts),
        "study_instance_uid": first.StudyInstanceUID,
        "series_instance_uid": first.SeriesInstanceUID,
        "seg_sop_instance_uid": seg.SOPInstanceUID,
        "seg_references_phase": phase + 1,
        "mask_voxels": int(study.mask.sum()),
        "params": p.to_json(),
    }


def read_truth(folder: Path) -> dict:
    return json.loads((Path(folder) / "truth.json").read_text())


__all__ = ["Geometry", "geometry", "ground_truth_seg", "read_truth", "series_datasets",
           "write_study", "TRANSFER_SYNTAXES"]
