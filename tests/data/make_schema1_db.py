"""Make ``spinenode-schema1.db``: a database written by the node before Alembic (schema_info 1).

Run with the code of that version on the path, from the repository root, e.g.::

    git worktree add /tmp/oldmain 48b9332
    PYTHONPATH=/tmp/oldmain .venv/bin/python tests/data/make_schema1_db.py tests/data/spinenode-schema1.db
    git worktree remove /tmp/oldmain

It holds one study with three series: one analysed (a done job, its events and outbox rows), one
abstained by the protocol rule with two reasons (stored comma-joined, as that version did) and one
ignored; plus a job the pipeline refused and a queued one. Timestamps are fixed.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from dicomnode.db import (  # the pre-Alembic models
    Instance,
    Job,
    JobEvent,
    JobKind,
    JobState,
    OutboxItem,
    OutboxState,
    Series,
    SeriesState,
    Study,
    init_db,
    make_engine,
    make_sessionmaker,
)

T0 = dt.datetime(2024, 5, 6, 7, 8, 9)
ROOT = "1.2.826.0.1.3680043.8.498.77"


def instance(series: Series, k: int) -> Instance:
    return Instance(sop_instance_uid=f"{series.series_uid}.{k}", sop_class_uid="1.2.840.10008.5.1.4.1.1.4",
                    series=series, path=f"instances/{series.series_uid}/{k}.dcm", transfer_syntax="1.2.840.10008.1.2.1",
                    size=1000 + k, sha256=f"{k:064d}", calling_ae="MODALITY", received_at=T0, instance_number=k,
                    position=[0.0, 0.0, 4.0 * k], orientation=[1, 0, 0, 0, 1, 0], pixel_spacing=[0.8, 0.8],
                    slice_thickness=4.0, temporal_position=1, rows=256, columns=256, late=False)


def series(study: Study, n: int, state: SeriesState, reason: str | None) -> Series:
    return Series(series_uid=f"{ROOT}.{n}", study=study, modality="MR", state=state, reason=reason,
                  reason_detail=None if reason is None else f"detail of {reason}", attrs={"Modality": "MR"},
                  instance_count=2, late_instances=0, first_received_at=T0, last_received_at=T0, decided_at=T0)


def job(s: Series, kind: JobKind, state: JobState, reason: str | None = None, result: dict | None = None) -> Job:
    return Job(series=s, kind=kind, state=state, reason=reason, reason_detail=None if reason is None else "why",
               attempts=1, max_attempts=5, not_before=T0, created_at=T0, updated_at=T0, result=result)


def main(target: str) -> None:
    """``target``: a SQLite file, or any database URL (an empty database)."""
    engine = make_engine(target if "://" in target else f"sqlite:///{Path(target).resolve()}")
    init_db(engine)
    with make_sessionmaker(engine).begin() as session:
        study = Study(study_uid=ROOT, created_at=T0)
        done_s = series(study, 1, SeriesState.COMPLETE, None)
        refused_s = series(study, 2, SeriesState.ABSTAINED, "slice_count,gap")
        ignored_s = series(study, 3, SeriesState.IGNORED, "not_vibe_family")
        rejected_s = series(study, 4, SeriesState.COMPLETE, None)
        queued_s = series(study, 5, SeriesState.COMPLETE, None)
        session.add_all([instance(s, k) for s in (done_s, refused_s, ignored_s, rejected_s, queued_s) for k in (1, 2)])
        done = job(done_s, JobKind.ANALYSE, JobState.DONE, result={"stage": "analyse", "shape": [1, 12, 256, 256]})
        refused = job(refused_s, JobKind.ABSTAIN, JobState.ABSTAINED, "slice_count,gap")
        rejected = job(rejected_s, JobKind.ANALYSE, JobState.ABSTAINED, "no_lesion")
        queued = job(queued_s, JobKind.ANALYSE, JobState.QUEUED)
        session.add_all([done, refused, rejected, queued])
        session.flush()
        for j, event in ((done, "created"), (done, "claimed"), (done, "done"), (refused, "abstained")):
            session.add(JobEvent(job_id=j.id, at=T0, event=event, attempt=1, worker="w", detail=None))
        for j, sop, state in ((done, "9.1", OutboxState.SENT), (done, "9.2", OutboxState.PENDING),
                              (refused, "9.3", OutboxState.DEAD)):
            session.add(OutboxItem(job_id=j.id, destination="pacs", path=f"outputs/{ROOT}/{sop}.dcm",
                                   sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34", sop_instance_uid=sop,
                                   state=state, attempts=1, next_attempt_at=T0, created_at=T0))
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1])
