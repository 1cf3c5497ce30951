"""Schema migrations on a real SQLite file: yesterday's database opens with every row kept.

``tests/data/spinenode-schema1.db`` was written by the node before Alembic (commit 48b9332,
``schema_info`` version 1, reasons comma-joined) with ``tests/data/make_schema1_db.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Engine

from dicomnode import migrations, status
from dicomnode.db import Base, Job, JobKind, JobState, Series, SeriesState, init_db, make_engine, make_sessionmaker
from dicomnode.errors import SchemaVersionError
from pipeline.reasons import Reason

FIXTURE = Path(__file__).resolve().parent.parent / "data" / "spinenode-schema1.db"
TABLES = ("studies", "series", "instances", "jobs", "job_events", "outbox")
REASON_TABLES = ("series", "jobs")


@pytest.fixture
def old_db(tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "spinenode.db"
    shutil.copyfile(FIXTURE, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def rows(engine: Engine, table: str) -> dict[int, dict[str, Any]]:
    with engine.connect() as conn:
        return {r["id"]: dict(r) for r in conn.execute(text(f"SELECT * FROM {table}")).mappings()}  # noqa: S608


def schema_differences(engine: Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)


def test_a_database_made_before_alembic_keeps_every_row(old_db: Engine) -> None:
    before = {t: rows(old_db, t) for t in TABLES}
    assert {r["reason"] for r in before["jobs"].values()} == {None, "slice_count,gap", "no_lesion"}
    migration = init_db(old_db)
    assert (migration.before, migration.after) == (migrations.BASELINE, migrations.head())
    after = {t: rows(old_db, t) for t in TABLES}
    for table in TABLES:
        assert after[table].keys() == before[table].keys(), table
        for row_id, old in before[table].items():
            new = dict(after[table][row_id])
            if table in REASON_TABLES:
                assert "reason" not in new and "reasons" in new
                old = {k: v for k, v in old.items() if k != "reason"}
                del new["reasons"]
            assert new == old, (table, row_id)
    with old_db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == migrations.head()
        assert conn.execute(text("SELECT version FROM schema_info")).scalar() == 2  # older nodes refuse it


def test_reasons_are_read_back_as_lists_of_codes(old_db: Engine) -> None:
    init_db(old_db)
    sessions = make_sessionmaker(old_db)
    with sessions() as session:
        jobs = session.scalars(select(Job).order_by(Job.id)).all()
        assert [(j.kind, j.state, j.reasons) for j in jobs] == [
            (JobKind.ANALYSE, JobState.DONE, None),
            (JobKind.ABSTAIN, JobState.ABSTAINED, [Reason.SLICE_COUNT, Reason.GAP]),
            (JobKind.ANALYSE, JobState.ABSTAINED, [Reason.NO_LESION]),
            (JobKind.ANALYSE, JobState.QUEUED, None),
        ]
        series = {s.state: s.reasons for s in session.scalars(select(Series).where(Series.reasons.is_not(None)))}
        assert series == {SeriesState.ABSTAINED: [Reason.SLICE_COUNT, Reason.GAP],
                          SeriesState.IGNORED: [Reason.NOT_VIBE_FAMILY]}
    report = status.collect(sessions)
    assert [j["reasons"] for j in report["abstained_jobs"]] == [["slice_count", "gap"], ["no_lesion"]]
    with old_db.connect() as conn:
        stored = conn.execute(text("SELECT reasons FROM jobs WHERE id = 2")).scalar()
    assert stored == '["slice_count", "gap"]'  # a JSON array, not a comma-joined string


def test_opening_again_changes_nothing(old_db: Engine) -> None:
    init_db(old_db)
    first = {t: rows(old_db, t) for t in TABLES}
    assert not init_db(old_db).changed
    assert {t: rows(old_db, t) for t in TABLES} == first


def test_upgraded_and_new_databases_match_the_models(old_db: Engine, tmp_path: Path) -> None:
    assert schema_differences(old_db)  # the fixture really is the old schema
    init_db(old_db)
    assert schema_differences(old_db) == []
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert init_db(fresh).log_event() == "database_created"
    assert schema_differences(fresh) == []
    assert set(inspect(fresh).get_table_names()) == set(inspect(old_db).get_table_names())
    fresh.dispose()


def test_downgrade_gives_back_the_comma_joined_reasons(old_db: Engine) -> None:
    before = rows(old_db, "jobs")
    init_db(old_db)
    with old_db.begin() as conn:
        command.downgrade(migrations.alembic_config(conn), migrations.BASELINE)
    assert rows(old_db, "jobs") == before


def test_a_database_from_a_newer_node_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'newer.db'}")
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    with pytest.raises(SchemaVersionError, match=r"revision 0099.*newer spinenode"):
        init_db(engine)
    engine.dispose()


def test_a_database_spinenode_did_not_make_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE patients (id INTEGER PRIMARY KEY)"))
    with pytest.raises(SchemaVersionError, match="not made by spinenode"):
        init_db(engine)
    assert inspect(engine).get_table_names() == ["patients"]  # left as it was
    engine.dispose()


def test_a_failing_upgrade_leaves_the_database_as_it_was(old_db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {t: rows(old_db, t) for t in (*TABLES, "schema_info")}
    real_upgrade = command.upgrade

    def upgrade_then_fail(cfg: Any, revision: str) -> None:
        real_upgrade(cfg, revision)
        raise RuntimeError("power cut after the last revision")

    monkeypatch.setattr(migrations.command, "upgrade", upgrade_then_fail)
    with pytest.raises(RuntimeError, match="power cut"):
        init_db(old_db)
    assert "alembic_version" not in inspect(old_db).get_table_names()
    assert {t: rows(old_db, t) for t in (*TABLES, "schema_info")} == before  # DDL rolled back too
    monkeypatch.undo()
    init_db(old_db)
    assert schema_differences(old_db) == []
