"""Database: SQLAlchemy 2 models and the engine (SQLite in WAL mode by default, PostgreSQL too).

Every received instance, every series decision, every job (with its events) and every outgoing
object is a row, so nothing the node has acknowledged lives only in memory. The schema changes
only through a migration (``dicomnode/migrations``, Alembic): :func:`init_db` creates a new
database at the newest revision, upgrades an older one in place keeping every row, and refuses
one made by a newer node.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    false,
    text,
    update,
)
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from pipeline.reasons import Reason, parse_reasons

if TYPE_CHECKING:
    from dicomnode.migrations import Migration


def utcnow() -> dt.datetime:
    """Naive UTC (what SQLite stores); every timestamp in the database is UTC."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class SeriesState(enum.StrEnum):
    RECEIVING = "receiving"  # instances arriving, protocol rule not met yet
    COMPLETE = "complete"  # rule met: an analysis job exists
    ABSTAINED = "abstained"  # wanted, but incomplete after the quiet period (or refused)
    IGNORED = "ignored"  # not the protocol this node analyses (recorded, never processed)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # waiting for a retry (not_before)
    DEAD = "dead"  # gave up after max attempts
    ABSTAINED = "abstained"  # the series or the pipeline refused: a reason, no analysis


class JobKind(enum.StrEnum):
    ANALYSE = "analyse"
    ABSTAIN = "abstain"


class OutboxState(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class ReasonList(TypeDecorator[list[Reason]]):
    """A list of :class:`Reason` stored as a JSON array of codes (SQL NULL for none); a row's
    codes are parsed when it is read (``ValueError`` for one that is not a known code)."""

    impl = JSON
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(none_as_null=True)

    def process_bind_param(self, value: Any, dialect: Dialect) -> list[str] | None:
        return None if value is None else [str(r) for r in parse_reasons(value)]

    def process_result_value(self, value: Any, dialect: Dialect) -> list[Reason] | None:
        return None if value is None else list(parse_reasons(value))


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class SchemaInfo(Base):
    """The schema version of the nodes made before Alembic (1); migration 0002 sets 2, which
    those nodes refuse. Alembic's ``alembic_version`` table holds the revision since."""

    __tablename__ = "schema_info"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class Study(Base):
    __tablename__ = "studies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    series: Mapped[list[Series]] = relationship(back_populates="study")


class Series(Base):
    __tablename__ = "series"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64), unique=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    modality: Mapped[str | None] = mapped_column(String(16))
    state: Mapped[SeriesState] = mapped_column(
        Enum(SeriesState, native_enum=False, length=16), default=SeriesState.RECEIVING, index=True)
    reasons: Mapped[list[Reason] | None] = mapped_column(ReasonList())  # why abstained or ignored
    reason_detail: Mapped[str | None] = mapped_column(Text)
    attrs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # series-level protocol headers
    instance_count: Mapped[int] = mapped_column(Integer, default=0)
    late_instances: Mapped[int] = mapped_column(Integer, default=0)
    first_received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    study: Mapped[Study] = relationship(back_populates="series")
    instances: Mapped[list[Instance]] = relationship(back_populates="series")


class Instance(Base):
    __tablename__ = "instances"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sop_instance_uid: Mapped[str] = mapped_column(String(64), unique=True)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    path: Mapped[str] = mapped_column(Text)  # relative to data_dir
    transfer_syntax: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    calling_ae: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    instance_number: Mapped[int | None] = mapped_column(Integer)
    position: Mapped[list[Any] | None] = mapped_column()  # ImagePositionPatient
    orientation: Mapped[list[Any] | None] = mapped_column()  # ImageOrientationPatient
    pixel_spacing: Mapped[list[Any] | None] = mapped_column()
    slice_thickness: Mapped[float | None] = mapped_column(Float)
    temporal_position: Mapped[int | None] = mapped_column(Integer)
    rows: Mapped[int | None] = mapped_column(Integer)
    columns: Mapped[int | None] = mapped_column(Integer)
    late: Mapped[bool] = mapped_column(Boolean, default=False)  # arrived after the series' decision
    series: Mapped[Series] = relationship(back_populates="instances")


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("series.id"), index=True)
    kind: Mapped[JobKind] = mapped_column(Enum(JobKind, native_enum=False, length=16))
    state: Mapped[JobState] = mapped_column(Enum(JobState, native_enum=False, length=16), index=True)
    reasons: Mapped[list[Reason] | None] = mapped_column(ReasonList())  # why abstained
    reason_detail: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer)
    not_before: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    result: Mapped[dict[str, Any] | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    series: Mapped[Series] = relationship()


class JobEvent(Base):
    """One line of a job's history: claimed, succeeded, failed, retry, lease expired, dead."""

    __tablename__ = "job_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    event: Mapped[str] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[str | None] = mapped_column(Text)


class OutboxItem(Base):
    """An object the node made, on disk, waiting to be (or already) C-STOREd to a destination."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("destination", "sop_instance_uid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    destination: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    sop_class_uid: Mapped[str] = mapped_column(String(64))
    sop_instance_uid: Mapped[str] = mapped_column(String(64))
    state: Mapped[OutboxState] = mapped_column(
        Enum(OutboxState, native_enum=False, length=16), default=OutboxState.PENDING, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another writer's lock


def probe_write(session: Session, timeout_s: float) -> None:
    """Start a write that changes nothing, waiting at most ``timeout_s`` for a lock; the caller
    rolls back. Raises (``OperationalError`` ...) when the database takes no write: locked by a
    stuck writer, read-only, out of space for its journal."""
    sqlite = session.get_bind().dialect.name == "sqlite"
    if sqlite:
        session.execute(text(f"PRAGMA busy_timeout={int(timeout_s * 1000)}"))
    else:
        session.execute(text(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'"))
    try:
        session.execute(update(Job).where(false()).values(state=Job.state))
    finally:
        if sqlite:
            session.execute(text(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"))


def _sqlite_pragmas(synchronous: str) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return on_connect


def make_engine(url: str, *, fsync: bool = True) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout, and with ``fsync``
    (``node.fsync``) every commit flushed to disk (``synchronous=FULL``: a committed row survives
    power loss); without, ``synchronous=NORMAL`` (a commit survives a crash of the node)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and ":memory:" not in path:
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas("FULL" if fsync else "NORMAL"))
        return engine
    return create_engine(url, pool_pre_ping=True)


def init_db(engine: Engine) -> Migration:
    """Bring the database to the schema this code uses, keeping every row; returns the
    revisions before and after.

    An empty database is created at the newest revision; one made by an older node (with or
    without Alembic) is upgraded in one transaction. Raises ``SchemaVersionError`` for a
    database made by a newer node or by something other than spinenode.
    """
    from dicomnode import migrations

    return migrations.upgrade(engine)


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
