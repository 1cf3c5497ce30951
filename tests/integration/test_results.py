"""Results back to a PACS: a real pynetdicom Storage SCP on localhost stands in for it."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes
from pynetdicom import AE, AllStoragePresentationContexts, evt
from sqlalchemy import select

from dicomnode import sender
from dicomnode.db import OutboxItem, OutboxState
from dicomnode.orthanc import free_port
from dicomnode.scu import send_files
from phantom.writer import read_truth
from pipeline.analysis import analyse
from pipeline.outputs.build import build_results, source_headers
from pipeline.outputs.sr import INDETERMINATE, INDETERMINATE_REASON, PRIMARY_BONE_MALIGNANCY
from pipeline.volume import load_series
from tests.conftest import wait_for
from tests.dciodvfy import dataset_errors

SEG = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


class FakePacs:
    """A Storage SCP that keeps what it receives (and can answer with a failure status)."""

    def __init__(self, port: int = 0, status: int = 0x0000, ssl_context: ssl.SSLContext | None = None) -> None:
        self.received: list[pydicom.Dataset] = []
        self.status = status
        self.lock = threading.Lock()
        ae = AE(ae_title="PACS")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax)
        self.server = ae.start_server(("127.0.0.1", port), block=False, ssl_context=ssl_context,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:  # noqa: ANN001
        if self.status and not 0xB000 <= self.status <= 0xBFFF:
            return self.status  # a failure: nothing kept
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self.lock:
            self.received.append(ds)
        return self.status  # 0x0000, or a warning: stored all the same

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def pacs() -> Iterator[FakePacs]:
    p = FakePacs()
    yield p
    p.stop()


def destination(port: int) -> dict:
    return {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": port}


def start_node(node_factory, port: int, **sender_cfg):  # noqa: ANN001, ANN201
    node = node_factory(sender={"retry_base_s": 0.2, "retry_max_s": 0.5, "poll_interval_s": 0.2} | sender_cfg)
    return node


def outbox(node) -> list[OutboxItem]:  # noqa: ANN001
    with node.sessions() as s:
        return list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)))


@pytest.fixture
def node_with_pacs(tmp_path, pacs, monkeypatch):  # noqa: ANN001, ANN201
    from tests.conftest import write_config

    def start(port: int | None = None, worker: dict | None = None, **sender_cfg):  # noqa: ANN202
        from dicomnode.config import load_config
        from dicomnode.node import Node, setup

        folder = tmp_path / f"n{port or pacs.port}"
        folder.mkdir()
        path = write_config(folder, sender={"retry_base_s": 0.2, "retry_max_s": 0.5, "poll_interval_s": 0.2}
                            | sender_cfg, **({"worker": worker} if worker else {}))
        with path.open("a") as fh:
            d = destination(port or pacs.port)
            fh.write(f'[[destinations]]\nname = "{d["name"]}"\nae_title = "{d["ae_title"]}"\n'
                     f'host = "{d["host"]}"\nport = {d["port"]}\n')
        cfg = load_config(path, environ={})
        engine, sessions = setup(cfg)
        node = Node(cfg, engine, sessions).start()
        started.append(node)
        return node

    started: list = []
    yield start
    for node in started:
        node.stop()


def study_level_groups(sr: hd.sr.Comprehensive3DSR) -> list:
    """The TID 1501 groups whose finding is not the lesion itself (Neoplasm): the study-level class."""
    return [g for g in sr.content.get_image_measurement_groups() if g.finding_type != codes.SCT.Neoplasm]


def test_results_arrive_valid_and_under_the_right_patient_and_study(node_with_pacs, pacs, series_files, tmp_path) -> None:  # noqa: ANN001, E501
    node = node_with_pacs()
    files = series_files(101)
    send_files(files, "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY")
    wait_for(lambda: len(pacs.received) >= 3, timeout=90)
    source = pydicom.dcmread(files[0], stop_before_pixels=True)
    by_class = {str(ds.SOPClassUID): ds for ds in pacs.received}
    assert set(by_class) == {SEG, COMPREHENSIVE_3D_SR, SECONDARY_CAPTURE}
    for ds in pacs.received:
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert dataset_errors(ds, tmp_path) == [], ds.SOPClassUID
    seg = hd.seg.segread(tmp_path / f"{by_class[SEG].SOPInstanceUID}.dcm")
    labels = [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]
    assert labels == ["Lesion (U-Net)", "Lesion (region growing)"]
    assert "NOT FOR DIAGNOSIS" in seg.SeriesDescription
    sr = hd.sr.srread(tmp_path / f"{by_class[COMPREHENSIVE_3D_SR].SOPInstanceUID}.dcm")
    assert sr.VerificationFlag == "UNVERIFIED"
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert groups, "one measurement group per lesion"
    names = {m.name.meaning for m in groups[0].get_measurements()}
    assert {"Volume", "Diameter"} <= names
    study_level = study_level_groups(sr)
    assert len(study_level) == 1
    # the class is a finding on the lesion classified (the largest): that lesion's tracking identifier and UID
    assert (study_level[0].tracking_identifier, study_level[0].tracking_uid) == (groups[0].tracking_identifier,
                                                                                 groups[0].tracking_uid)
    truth = read_truth(files[0].parent.parent)["label_name"]
    expected = codes.SCT.BonyMetastasis if truth == "metastasis" else PRIMARY_BONE_MALIGNANCY
    finding = study_level[0].finding_type
    reasons = [e.value for e in study_level[0].get_qualitative_evaluations() if e.name == INDETERMINATE_REASON]
    assert finding in (expected, INDETERMINATE)  # never the wrong class on this phantom
    assert (finding == INDETERMINATE) == bool(reasons)  # indeterminate exactly when a check failed, with its reason
    values = {m.name.value: m.value for m in study_level[0].get_measurements()}
    assert 0 <= float(values["CLS_PROB_MET"]) <= 1 and "RAD_SCORE" in values
    ref = groups[0].referenced_segment
    assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
    assert list(ref.referenced_segment_numbers) == [1]
    evidence = {str(item.ReferencedSOPInstanceUID)
                for seq in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
                for study in sr.get(seq, []) for series in study.ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence}
    sources = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert seg.SOPInstanceUID in evidence and sources <= evidence  # references resolve
    key = by_class[SECONDARY_CAPTURE]
    assert key.BurnedInAnnotation == "YES" and "NOT FOR DIAGNOSIS" in key.ImageComments
    assert "AI: " in key.ImageComments and "P(metastasis)" in key.ImageComments  # the study-level class
    assert all(i.state is OutboxState.SENT for i in outbox(node))


def test_seg_frames_match_the_masks_slice_by_slice(phantom_dir: Path) -> None:
    """Frame k is slice k, empty frames included, on the (oblique) source geometry."""
    files = sorted((phantom_dir / "study_102" / "series").glob("*.dcm"))
    analysis = analyse(load_series(files))
    source = source_headers(analysis.volume)
    assert abs(float(np.degrees(np.arccos(abs(np.cross(
        np.array(source[0].ImageOrientationPatient[:3], dtype=float),
        np.array(source[0].ImageOrientationPatient[3:], dtype=float))[2]))))) > 1  # oblique
    seg, sr, key = build_results(analysis)
    uids = [str(ds.SOPInstanceUID) for ds in source]
    pixels = seg.get_pixels_by_source_instance(source_sop_instance_uids=uids, segment_numbers=[1, 2],
                                               assert_missing_frames_are_empty=True)
    assert pixels.shape[:3] == analysis.unet_mask.shape
    empty = 0
    for k in range(len(uids)):
        assert np.array_equal(pixels[k, ..., 0].astype(bool), analysis.unet_mask[k])
        assert np.array_equal(pixels[k, ..., 1].astype(bool), analysis.region_growing.mask[k])
        empty += not analysis.unet_mask[k].any()
    assert empty > 0  # the test covers empty frames
    assert seg.NumberOfFrames == 2 * len(uids)


def test_an_implausible_study_is_reported_indeterminate_with_its_reasons(phantom_dir: Path, tmp_path: Path) -> None:
    """When the plausibility checks fail, the SR codes "Indeterminate" and each reason, the key
    image says so, and the objects stay valid (dciodvfy, highdicom)."""
    from dataclasses import replace

    from pipeline.plausibility import IndeterminateReason, Verdict

    files = sorted((phantom_dir / "study_101" / "series").glob("*.dcm"))
    analysis = analyse(load_series(files))
    assert analysis.verdict is not None and analysis.summary()["verdict"] == analysis.verdict.summary()
    doubt = Verdict(None, (IndeterminateReason.SEGMENTATIONS_DISAGREE, IndeterminateReason.MODELS_DISAGREE))
    seg, sr_ds, key = build_results(replace(analysis, verdict=doubt))
    for ds in (sr_ds, key):
        assert dataset_errors(ds, tmp_path) == [], ds.SOPClassUID
    sr = hd.sr.srread(tmp_path / f"{sr_ds.SOPInstanceUID}.dcm")
    (study_level,) = study_level_groups(sr)
    assert study_level.finding_type == INDETERMINATE
    reasons = [e.value.value for e in study_level.get_qualitative_evaluations() if e.name == INDETERMINATE_REASON]
    assert reasons == ["SEG_DISAGREE", "MODELS_DISAGREE"]
    values = {m.name.value: m.value for m in study_level.get_measurements()}
    assert float(values["CLS_PROB_MET"]) == round(analysis.classification.probability_metastasis, 4)
    assert "AI: indeterminate (segmentations disagree, models disagree)" in key.ImageComments
    plain = build_results(analysis)
    assert sr_ds.SOPInstanceUID == plain[1].SOPInstanceUID  # same input and models: same UIDs


def test_region_growing_outlining_the_same_lesion_too_large_is_no_disagreement(phantom_dir: Path, tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The agreement check asks where the lesion is, not how alike the outlines are: region growing
    that leaked round the U-Net's lesion (a bright cortex joined it, as on the shifted look) has a
    Dice below 0.4 with it but holds it whole, so the finding is not made indeterminate for that,
    and the SR reports both measures."""
    from dataclasses import replace

    from scipy import ndimage

    import pipeline.analysis
    from pipeline.plausibility import IndeterminateReason

    real = pipeline.analysis.region_growing
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = True

    def leaked(image, pixel_mm, enhancement=None):  # noqa: ANN001, ANN202 - region growing's signature
        grown = real(image, pixel_mm, enhancement)
        return replace(grown, mask=ndimage.binary_dilation(grown.mask, structure=in_plane, iterations=12))

    monkeypatch.setattr(pipeline.analysis, "region_growing", leaked)
    analysis = analyse(load_series(sorted((phantom_dir / "study_101" / "series").glob("*.dcm"))))
    assert analysis.lesion_source == "unet" and analysis.verdict is not None
    assert analysis.agreement_dice is not None and analysis.agreement_dice < 0.4
    assert analysis.agreement_overlap is not None and analysis.agreement_overlap >= 0.5
    assert IndeterminateReason.SEGMENTATIONS_DISAGREE not in analysis.verdict.reasons
    assert analysis.summary()["agreement_overlap"] == round(analysis.agreement_overlap, 4)
    _, sr_ds, _ = build_results(analysis)
    assert dataset_errors(sr_ds, tmp_path) == []
    (study_level,) = study_level_groups(hd.sr.srread(tmp_path / f"{sr_ds.SOPInstanceUID}.dcm"))
    values = {m.name.value: float(m.value) for m in study_level.get_measurements()}
    assert values["DICE_UNET_RG"] == round(analysis.agreement_dice, 4)
    assert values["OVERLAP_UNET_RG"] == round(analysis.agreement_overlap, 4)


def test_the_verdict_weighs_the_lesions_share_of_the_body(phantom_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The "lesion in the vertebral body" check gets both measures of the reported lesion: the share
    of it within 5 mm of the located body and the share of the body it covers."""
    import pipeline.analysis
    from pipeline.plausibility import body_share, inside_fraction

    seen: dict = {}
    real = pipeline.analysis.assess

    def spy(**kwargs):  # noqa: ANN003, ANN202 - assess's signature
        seen.update(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(pipeline.analysis, "assess", spy)
    analysis = analyse(load_series(sorted((phantom_dir / "study_101" / "series").glob("*.dcm"))))
    lesion, body = analysis.lesions[0].mask, analysis.region_growing.body.mask
    assert seen["body_share"] == body_share(lesion, body) > 0
    assert seen["inside_body"] == inside_fraction(lesion, body, analysis.volume.spacing[1:], 5.0) > 0


def test_uids_are_deterministic_and_change_with_the_model(phantom_dir: Path) -> None:
    from pipeline.outputs.identity import ResultIdentity

    files = sorted((phantom_dir / "study_101" / "series").glob("*.dcm"))
    a = build_results(analyse(load_series(files)))
    b = build_results(analyse(load_series(files)))
    assert [ds.SOPInstanceUID for ds in a] == [ds.SOPInstanceUID for ds in b]
    assert [ds.SeriesInstanceUID for ds in a] == [ds.SeriesInstanceUID for ds in b]
    same = ResultIdentity(source_series_uid="1.2.3", unet_sha256="aa")
    other = ResultIdentity(source_series_uid="1.2.3", unet_sha256="bb")
    assert same.uid("seg", "instance") != other.uid("seg", "instance")


def test_within_one_process_results_go_out_without_waiting_for_a_poll(node_with_pacs, pacs,  # noqa: ANN001
                                                                       series_files) -> None:  # noqa: ANN001
    """Worker and sender poll every 10 minutes here: the assembler wakes the worker when it queues
    the job, and the worker wakes the sender when the results enter the outbox."""
    node = node_with_pacs(worker={"poll_interval_s": 600.0}, poll_interval_s=600.0)
    send_files(series_files(101), "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY")
    wait_for(lambda: len(pacs.received) >= 3, timeout=120)
    assert {str(ds.SOPClassUID) for ds in pacs.received} == {SEG, COMPREHENSIVE_3D_SR, SECONDARY_CAPTURE}


def test_a_pacs_down_at_first_gets_everything_exactly_once(node_with_pacs, series_files) -> None:  # noqa: ANN001
    port = free_port()
    node = node_with_pacs(port, max_attempts=50)
    send_files(series_files(101), "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY")
    wait_for(lambda: len(outbox(node)) == 3 and all(i.attempts >= 2 for i in outbox(node)), timeout=90)
    late = FakePacs(port=port)
    try:
        wait_for(lambda: all(i.state is OutboxState.SENT for i in outbox(node)), timeout=30)
        assert len(late.received) == 3
        assert len({ds.SOPInstanceUID for ds in late.received}) == 3
    finally:
        late.stop()


def test_a_refusing_pacs_dead_letters_then_resend(node_with_pacs, series_files) -> None:  # noqa: ANN001
    refusing = FakePacs(status=0xA700)
    try:
        node = node_with_pacs(refusing.port, max_attempts=2)
        send_files(series_files(101), "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY")
        wait_for(lambda: len(outbox(node)) == 3 and all(i.state is OutboxState.DEAD for i in outbox(node)),
                 timeout=90)
        from dicomnode import status

        report = status.collect(node.sessions)
        assert report["outbox"]["dead"] == 3
        refusing.status = 0x0000
        assert sender.resend(node.sessions) == 3
        wait_for(lambda: all(i.state is OutboxState.SENT for i in outbox(node)), timeout=30)
        assert len(refusing.received) == 3
    finally:
        refusing.stop()


def test_abstention_sr_for_an_incomplete_series(node_with_pacs, pacs, series_files, tmp_path) -> None:  # noqa: ANN001
    node = node_with_pacs()  # the fixture's quiet period is 2 s
    send_files(series_files(103)[:11], "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY")
    wait_for(lambda: len(pacs.received) >= 1, timeout=60)
    (sr,) = pacs.received
    assert str(sr.SOPClassUID) == COMPREHENSIVE_3D_SR
    assert dataset_errors(sr, tmp_path) == []
    parsed = hd.sr.srread(tmp_path / f"{sr.SOPInstanceUID}.dcm")
    text = str(parsed.ContentSequence)
    assert "ABST_SLICE_COUNT" in text and "Incomplete series: slice count" in text
