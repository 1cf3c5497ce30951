"""What a worker gets when it claims a job: an immutable snapshot with its log context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dicomnode.db import Job, JobKind, JobState


@dataclass(frozen=True, kw_only=True)
class ClaimedJob:
    id: int
    kind: JobKind
    state: JobState
    attempt: int
    series_id: int
    series_uid: str
    study_uid: str
    lease_owner: str

    @classmethod
    def from_row(cls, job: Job) -> ClaimedJob:
        assert job.lease_owner is not None
        return cls(
            id=job.id,
            kind=job.kind,
            state=job.state,
            attempt=job.attempts,
            series_id=job.series_id,
            series_uid=job.series.series_uid,
            study_uid=job.series.study.study_uid,
            lease_owner=job.lease_owner,
        )

    def log_context(self) -> dict[str, Any]:
        return {"job_id": self.id, "kind": str(self.kind), "attempt": self.attempt,
                "series_uid": self.series_uid}
