"""Validation through the node on studies from another generator (``../shared/external-validation``
by default, or any folder of ``caseNN/{series/, truth.npz, truth.json}``).

    .venv/bin/python -m bench.external [--cases DIR] [--out report.json]
    .venv/bin/python -m bench.external --direct [--weights unet.pt]   # U-Net only, in this process

Each case's series is sent over DICOM to `spinenode serve` (a subprocess on an OS-chosen port, the
shipped weights, `worker.workers = 1`); a pynetdicom SCP in this process is the PACS. What comes
back is scored against the truth: Dice of each SEG segment (1 U-Net, 2 region growing) with the
truth mask, the coded finding of the SR (bony metastasis, primary malignant neoplasm of bone, or
indeterminate), the classifier's and the radiomics model's P(metastasis). Printed: per case, then
mean Dice, AUC of each probability, coverage (share of studies with a coded diagnosis) and the
number of wrong coded diagnoses. ``--direct`` scores only a U-Net's segmentation as the node
reports it (the shipped weights or ``--weights``; its lesions in the located vertebral body),
loading each series in this process: a quick check of candidate weights before they are shipped.
Validation only: never train or tune on these cases.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pynetdicom import AE, AllStoragePresentationContexts, evt
from sklearn.metrics import roc_auc_score

from bench.crash import REPO, NodeProcess, write_config
from dicomnode.scu import send_files
from pipeline.metrics import dice

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_CLASSES = {"1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.88.22"}
FINDING = "121071"
CODED = {"94222008": "metastasis", "93725000": "primary", "82334004": "indeterminate"}
CLASSIFIER_P, RADIOMICS_P = "CLS_PROB_MET", "RAD_PROB_MET"
DIAMETER = "81827009"  # SCT Diameter: each lesion's maximum diameter
DEFAULT_CASES = REPO.parent / "shared" / "external-validation"


class ResultPacs:
    """Keeps every dataset it receives, per study."""

    def __init__(self) -> None:
        self.received: dict[str, list[pydicom.Dataset]] = {}
        self.lock = threading.Lock()
        ae = AE(ae_title="PACS")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax))
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:  # noqa: ANN001 - pynetdicom Event
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.received.setdefault(str(ds.StudyInstanceUID), []).append(ds)
        return 0x0000

    def results(self, study_uid: str) -> list[pydicom.Dataset]:
        with self.lock:
            return list(self.received.get(study_uid, []))


def _items(seq: Any) -> Any:  # noqa: ANN401 - pydicom sequences
    for item in seq or []:
        yield item
        yield from _items(item.get("ContentSequence"))


def read_sr(sr: pydicom.Dataset) -> dict[str, Any]:
    """The coded finding, the probabilities and each lesion's maximum diameter (largest first, as
    the node reports them) of a measurement or abstention SR."""
    out: dict[str, Any] = {"finding": None, "p_classifier": None, "p_radiomics": None, "diameters_mm": []}
    for item in _items(sr.get("ContentSequence")):
        name = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else None
        if item.ValueType == "NUM" and name == DIAMETER:
            out["diameters_mm"].append(float(item.MeasuredValueSequence[0].NumericValue))
        elif item.ValueType == "CODE" and name == FINDING:
            out["finding"] = CODED.get(item.ConceptCodeSequence[0].CodeValue, item.ConceptCodeSequence[0].CodeValue)
        elif item.ValueType == "NUM" and name in (CLASSIFIER_P, RADIOMICS_P):
            value = float(item.MeasuredValueSequence[0].NumericValue)
            out["p_classifier" if name == CLASSIFIER_P else "p_radiomics"] = value
    return out


def seg_masks(seg: pydicom.Dataset, source: list[pydicom.Dataset], shape: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Segment number -> mask in the truth's slice order (ascending along the slice normal)."""
    orientation = np.array(source[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.unique(np.round([float(np.dot(normal, ds.ImagePositionPatient)) for ds in source], 2))
    frames = seg.pixel_array.reshape(-1, *shape[1:])
    masks: dict[int, np.ndarray] = {}
    for k, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        where = float(np.dot(normal, group.PlanePositionSequence[0].ImagePositionPatient))
        index = int(np.argmin(np.abs(positions - where)))
        masks.setdefault(number, np.zeros(shape, dtype=bool))[index] |= frames[k].astype(bool)
    return masks


def score_case(case: Path, results: list[pydicom.Dataset]) -> dict[str, Any]:
    truth = json.loads((case / "truth.json").read_text())
    mask = np.load(case / "truth.npz")["mask"].astype(bool)
    source = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted((case / "series").glob("*.dcm"))]
    row: dict[str, Any] = {"case": case.name, "label": truth["label"], "phases": truth["phases"],
                           "vendor": truth.get("vendor"), "matrix": truth.get("matrix")}
    row |= {"dice_unet": None, "dice_rg": None, "finding": None, "p_classifier": None, "p_radiomics": None}
    for ds in results:
        if ds.SOPClassUID == SEG_CLASS:
            masks = seg_masks(ds, source, mask.shape)
            row["dice_unet"] = round(dice(masks.get(1, np.zeros_like(mask)), mask), 3)
            row["dice_rg"] = round(dice(masks.get(2, np.zeros_like(mask)), mask), 3)
        elif ds.SOPClassUID in SR_CLASSES:
            row |= read_sr(ds)
    row["wrong"] = row["finding"] in ("metastasis", "primary") and row["finding"] != truth["label"]
    return row


def _auc(rows: list[dict[str, Any]], key: str) -> float | None:
    pairs = [(r["label"] == "metastasis", r[key]) for r in rows if r[key] is not None]
    labels = {y for y, _ in pairs}
    return None if len(labels) < 2 else round(float(roc_auc_score(*zip(*pairs, strict=True))), 3)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float | None:
        values = [r[key] if r[key] is not None else 0.0 for r in rows]
        return round(float(np.mean(values)), 3) if values else None

    coded = [r for r in rows if r["finding"] in ("metastasis", "primary")]
    return {"cases": len(rows), "dice_unet": mean("dice_unet"), "dice_rg": mean("dice_rg"),
            "auc_classifier": _auc(rows, "p_classifier"), "auc_radiomics": _auc(rows, "p_radiomics"),
            "coverage": round(len(coded) / max(len(rows), 1), 3),
            "correct_coded": sum(not r["wrong"] for r in coded), "wrong_coded": sum(r["wrong"] for r in rows),
            "indeterminate": sum(r["finding"] == "indeterminate" for r in rows),
            "no_finding": sum(r["finding"] is None for r in rows)}


def run(cases: list[Path], timeout_s: float) -> list[dict[str, Any]]:
    pacs = ResultPacs()
    rows = []
    with tempfile.TemporaryDirectory(prefix="spinenode-external-") as tmp:
        node = NodeProcess(write_config(Path(tmp), pacs.port, quiet_period_s=20.0))
        try:
            port = node.port()
            for case in cases:
                study_uid = str(json.loads((case / "truth.json").read_text())["study_uid"])
                t = time.perf_counter()
                send_files(sorted((case / "series").glob("*.dcm")), "SPINENODE", "127.0.0.1", port,
                           calling_ae="EXTERNAL")
                results = _wait(pacs, study_uid, timeout_s)
                row = score_case(case, results) | {"seconds": round(time.perf_counter() - t, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            node.stop()
            pacs.server.shutdown()
    return rows


def _wait(pacs: ResultPacs, study_uid: str, timeout_s: float) -> list[pydicom.Dataset]:
    """The study's results once an SR has arrived and nothing more came for 3 s."""
    deadline = time.monotonic() + timeout_s
    last, count = time.monotonic(), 0
    while time.monotonic() < deadline:
        results = pacs.results(study_uid)
        if len(results) != count:
            last, count = time.monotonic(), len(results)
        has_sr = any(ds.SOPClassUID in SR_CLASSES for ds in results)
        if has_sr and time.monotonic() - last > 3.0:
            return results
        time.sleep(0.2)
    return pacs.results(study_uid)


def direct(cases: list[Path], weights: Path | None) -> list[dict[str, Any]]:
    """U-Net Dice per case, the series loaded and segmented in this process; the mask scored is
    the one the node reports (its lesions in the vertebral body the spine localiser found)."""
    from models.unet_io import segmentation_input
    from pipeline.region_growing import segment as region_growing
    from pipeline.segmentation import DEFAULT_WEIGHTS, UNetSegmenter
    from pipeline.volume import load_series

    segmenter = UNetSegmenter(weights or DEFAULT_WEIGHTS, precision="fp32")
    rows = []
    for case in cases:
        truth = np.load(case / "truth.npz")["mask"].astype(bool)
        volume = load_series(sorted((case / "series").glob("*.dcm")))
        image = segmentation_input(volume.pixels)
        rg = region_growing(image, volume.spacing[1:])
        pred = segmenter.segment_in_body(image, rg.body.mask, rg.marrow_level, volume.spacing[1:])
        rows.append({"case": case.name, "dice_unet": round(dice(pred, truth), 3)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"mean_dice_unet": round(float(np.mean([r["dice_unet"] for r in rows])), 3)}))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--out", type=Path, default=None, help="write the rows and the summary as JSON")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one study's results")
    parser.add_argument("--direct", action="store_true", help="score only the U-Net, in this process")
    parser.add_argument("--weights", type=Path, default=None, help="with --direct: U-Net weights to score")
    args = parser.parse_args()
    cases = sorted(p for p in args.cases.iterdir() if (p / "truth.json").exists())
    if args.direct:
        direct(cases, args.weights)
        return 0
    rows = run(cases, args.timeout)
    summary = summarise(rows)
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
