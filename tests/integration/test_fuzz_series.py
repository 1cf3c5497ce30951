"""Fuzzing through the whole node: complete series with mutated headers and pixel data, each with
fresh study, series and instance UIDs, sent to a node with a worker. Every series must end with a
result the PACS can read (done: SEG, SR and key image; or an abstention SR with its reasons), never
a dead job; the node answers C-ECHO throughout, refuses nothing for lack of resources, and writes
nothing outside its data folder."""

from __future__ import annotations

import copy
import random
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from dicomnode.db import Job, JobState, Series, SeriesState, Study
from dicomnode.node import Node
from dicomnode.scu import send_datasets
from phantom import generate_study, write_study
from tests.conftest import wait_for

SR = "1.2.840.10008.5.1.4.1.1.88.34"


def _pixels(ds: Dataset, array: np.ndarray) -> None:
    ds.PixelData = np.clip(array, 0, 65535).astype(np.uint16).tobytes()


def _noise(series: list[Dataset], rng: random.Random) -> None:
    for ds in series:
        a = ds.pixel_array.astype(np.float64)
        _pixels(ds, a + np.random.default_rng(rng.randrange(1 << 30)).normal(0, a.std() * rng.uniform(0.5, 3), a.shape))


def _constant(series: list[Dataset], rng: random.Random) -> None:
    value = rng.choice([0, 1, 4095])
    for ds in series:
        _pixels(ds, np.full((ds.Rows, ds.Columns), value))


def _saturate(series: list[Dataset], rng: random.Random) -> None:
    for ds in series:
        _pixels(ds, np.where(ds.pixel_array > np.percentile(ds.pixel_array, 50), 65535, 0))


def _stripes(series: list[Dataset], rng: random.Random) -> None:
    for ds in series:
        a = ds.pixel_array.copy()
        a[:: rng.randint(2, 9)] = rng.randint(0, 65535)
        _pixels(ds, a)


def _rescale(series: list[Dataset], rng: random.Random) -> None:
    slope, intercept = rng.choice([(-1.0, 0.0), (1e-6, 0.0), (1e6, 0.0), (1.0, -1e5), (0.0, 5.0)])
    for ds in series:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept


def _bits(series: list[Dataset], rng: random.Random) -> None:
    stored = rng.choice([1, 8, 10])
    for ds in series:
        ds.BitsStored, ds.HighBit = stored, stored - 1


def _drop_slice(series: list[Dataset], rng: random.Random) -> None:
    del series[rng.randrange(len(series))]


def _duplicate_position(series: list[Dataset], rng: random.Random) -> None:
    series[3].ImagePositionPatient = list(series[4].ImagePositionPatient)


def _tilt(series: list[Dataset], rng: random.Random) -> None:
    angle = np.radians(rng.choice([35.0, 60.0, 90.0]))
    for ds in series:
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(np.cos(angle)), float(-np.sin(angle))]


def _spacing(series: list[Dataset], rng: random.Random) -> None:
    value = rng.choice([0.001, 25.0, 1e9])
    for ds in series:
        ds.PixelSpacing = [value, value]


def _gap(series: list[Dataset], rng: random.Random) -> None:
    for ds in series[6:]:
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y, z + 30.0]


def _shuffled_headers(series: list[Dataset], rng: random.Random) -> None:
    numbers = [ds.InstanceNumber for ds in series]
    rng.shuffle(numbers)
    for ds, n in zip(series, numbers, strict=True):
        ds.InstanceNumber = n
    for ds in series:
        for keyword in ("WindowCenter", "WindowWidth", "SliceLocation", "AcquisitionTime"):
            if keyword in ds and rng.random() < 0.5:
                delattr(ds, keyword)


def _no_contrast(series: list[Dataset], rng: random.Random) -> None:
    for ds in series:
        for keyword in ("ContrastBolusAgent", "ContrastBolusRoute"):
            if keyword in ds:
                delattr(ds, keyword)


MUTATIONS: list[Callable[[list[Dataset], random.Random], None]] = [
    _noise, _constant, _saturate, _stripes, _rescale, _bits, _drop_slice, _duplicate_position, _tilt, _spacing,
    _gap, _shuffled_headers, _no_contrast]


def mutated_series(base: list[Dataset], rng: random.Random, count: int) -> list[list[Dataset]]:
    """``count`` series, each one to three mutations of a copy of ``base`` with fresh UIDs."""
    out = []
    for k in range(count):
        series = [copy.deepcopy(ds) for ds in base]
        for mutation in rng.sample(MUTATIONS, rng.randint(1, 3)) if k >= len(MUTATIONS) else [MUTATIONS[k]]:
            mutation(series, rng)
        study, series_uid = generate_uid(), generate_uid()
        for ds in series:
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        out.append(series)
    return out


def _echo(port: int) -> int:
    ae = AE(ae_title="FUZZ")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title="SPINENODE")
    assert assoc.is_established, "the node stopped accepting associations"
    try:
        return int(assoc.send_c_echo().Status)
    finally:
        assoc.release()


def _ends(node: Node) -> dict[str, tuple[SeriesState, JobState | None]]:
    with node.sessions() as s:
        rows = s.execute(select(Study.study_uid, Series.state, Job.state).join(Series, Series.study_id == Study.id)
                         .outerjoin(Job, Job.series_id == Series.id)).all()
    return {study: (series_state, job_state) for study, series_state, job_state in rows}


def test_mutated_series_all_end_with_a_result_through_the_worker(node_factory, tmp_path) -> None:  # noqa: ANN001
    node = node_factory(protocol={"quiet_period_s": 3.0, "check_interval_s": 0.5},
                        # the U-Net (about 10 s a study on this CPU whatever the matrix: it works on its own
                        # grid) sees the same decoded image as region growing: left out to keep the tier fast
                        worker={"retry_base_s": 0.2, "retry_max_s": 0.5, "max_attempts": 2, "use_unet": False})
    # a small study (128x128) so that twenty analyses fit in the test tier's time
    folder = write_study(generate_study(104, matrix=(128, 128)), tmp_path / "phantom")
    base = [pydicom.dcmread(p) for p in sorted((folder / "series").glob("*.dcm"))]
    cases = mutated_series(base, random.Random(20261130), 20)
    statuses, started = [], time.monotonic()
    for series in cases:
        statuses += send_datasets(series, "SPINENODE", "127.0.0.1", node.port, calling_ae="FUZZ")
        assert _echo(node.port) == 0
    assert not [s for s in statuses if s is not None and 0xA700 <= s <= 0xA7FF], "refused for lack of resources"
    studies = [str(series[0].StudyInstanceUID) for series in cases]

    def final() -> dict | None:
        ends = _ends(node)
        done = all(study in ends and (ends[study][0] is SeriesState.IGNORED
                                      or ends[study][1] in (JobState.DONE, JobState.ABSTAINED, JobState.DEAD))
                   for study in studies)  # an abstained series ends when its abstention job has written the SR
        return ends if done else None

    sent = time.monotonic() - started
    ends = wait_for(final, timeout=600, interval=0.5)
    assert _echo(node.port) == 0
    summary = Counter(f"{series_state}/{job_state}" for series_state, job_state in ends.values())
    print(f"\nfuzz through the worker: {len(cases)} series sent in {sent:.0f} s, all ended after "
          f"{time.monotonic() - started:.0f} s: {dict(summary)}")
    dead = [s for s in studies if ends[s][1] is JobState.DEAD]
    assert not dead, f"{len(dead)} series ended in a dead job (an exception the pipeline did not turn into a reason)"
    outputs = node.cfg.data_dir / "outputs"
    for k, study in enumerate(studies):
        if ends[study][0] is SeriesState.IGNORED:
            continue  # not a series this node analyses (recorded, no result by design)
        files = (outputs / study).glob("*.dcm")
        classes = {str(pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID) for p in files}
        assert SR in classes, f"case {k} ({ends[study]}): no SR"
    assert sum(ends[s][0] is not SeriesState.IGNORED for s in studies) >= 15  # most cases reached the worker
    data = node.cfg.data_dir
    top = {p.relative_to(data).parts[0] for p in data.rglob("*") if p.is_file()}
    assert top <= {"instances", "conflicts", "outputs", "logs", "run", "spinenode.db", "spinenode.db-wal",
                   "spinenode.db-shm", "incoming"}, top
