"""Results on disk and in the outbox before any send.

Every object is written atomically under ``data_dir/outputs/<study>/<sop>.dcm`` and gets one
outbox row per configured destination in the same transaction that ends the job, so a crash
at any point leaves either no trace (the job runs again and, with deterministic UIDs, makes the
same files) or files plus rows that the sender will deliver.
"""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

from pydicom.dataset import Dataset
from sqlalchemy import select
from sqlalchemy.orm import Session

from dicomnode import storage
from dicomnode.config import Config
from dicomnode.db import Instance, OutboxItem, OutboxState
from dicomnode.errors import NodeError


class IdentityMismatch(NodeError):
    """An output does not carry the patient and study of its input series."""


def check_identity(output: Dataset, source: Dataset) -> None:
    for attr in ("StudyInstanceUID", "PatientID"):
        if str(output.get(attr, "")) != str(source.get(attr, "")):
            raise IdentityMismatch(f"output {output.SOPInstanceUID} has a different {attr} from its input series")


def write_outputs(cfg: Config, outputs: Sequence[Dataset]) -> list[tuple[Dataset, str]]:
    """Write each dataset; returns (dataset, path relative to data_dir)."""
    written = []
    for ds in outputs:
        rel = Path("outputs") / storage.require_uid("StudyInstanceUID", ds.StudyInstanceUID) / \
            f"{storage.require_uid('SOPInstanceUID', ds.SOPInstanceUID)}.dcm"
        buffer = BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        storage.write_atomic(cfg.data_dir / rel, buffer.getvalue(), fsync=cfg.node.fsync)
        written.append((ds, str(rel)))
    return written


def enqueue(session: Session, cfg: Config, job_id: int, written: Sequence[tuple[Dataset, str]]) -> int:
    """One outbox row per output and destination (idempotent: existing rows are kept)."""
    count = 0
    for ds, rel in written:
        for dest in cfg.destinations:
            exists = session.scalar(select(OutboxItem.id).where(
                OutboxItem.destination == dest.name, OutboxItem.sop_instance_uid == str(ds.SOPInstanceUID)))
            if exists is not None:
                continue
            session.add(OutboxItem(job_id=job_id, destination=dest.name, path=rel,
                                   sop_class_uid=str(ds.SOPClassUID), sop_instance_uid=str(ds.SOPInstanceUID),
                                   state=OutboxState.PENDING))
            count += 1
    return count


def source_paths(session: Session, cfg: Config, series_id: int) -> list[Path]:
    rel = session.scalars(select(Instance.path).where(Instance.series_id == series_id,
                                                      Instance.late.is_(False))).all()
    return [cfg.data_dir / p for p in rel]
