"""Schema migrations (Alembic): every change to the database schema is a revision in ``versions/``.

:func:`upgrade` brings the database the node opens to the newest revision, in one transaction
(SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: under an advisory lock, so nodes starting together
migrate once):

* empty: every revision runs, from the baseline (``0001``, the schema before Alembic);
* made before Alembic (``schema_info`` version 1, no ``alembic_version``): recorded as the
  baseline, then upgraded, keeping every row;
* at an older revision: upgraded;
* at a revision this code does not know (a newer node upgraded it): refused.

Alembic is configured here, in code; no ``alembic.ini`` is needed. A new revision (numbered on
from the newest, from ``script.py.mako``)::

    .venv/bin/python -c "from alembic import command; from dicomnode.migrations import alembic_config; \
        command.revision(alembic_config(), 'what changes', rev_id='0003')"

then write its ``upgrade`` and ``downgrade``; ``tests/integration/test_migrations.py`` checks that
a database upgraded from yesterday's equals the models and keeps every row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

from dicomnode.errors import SchemaVersionError

FOLDER = Path(__file__).resolve().parent
BASELINE = "0001"  # the schema of the nodes made before Alembic (schema_info version 1)
PRE_ALEMBIC_VERSION = 1
ADVISORY_LOCK = 0x5350494E454E4F44  # "SPINENOD": one migrating node at a time on PostgreSQL


@dataclass(frozen=True, kw_only=True)
class Migration:
    """What :func:`upgrade` did: the revision before (None: the database was empty) and after."""

    before: str | None
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def log_event(self) -> str:
        return "database_created" if self.before is None else "database_upgraded"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for this package; ``connection``: the one to migrate on."""
    cfg = Config()
    cfg.set_main_option("script_location", str(FOLDER))
    cfg.attributes["connection"] = connection
    return cfg


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this code knows."""
    revision = scripts().get_current_head()
    assert revision is not None
    return revision


def _lock(conn: Connection) -> None:
    """Serialise migrations of one database: the write lock (SQLite) or an advisory lock."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # pysqlite would not begin before DDL by itself
    elif conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})


def _pre_alembic_version(conn: Connection, url: str, tables: set[str]) -> None:
    if "schema_info" not in tables:
        raise SchemaVersionError(
            f"the database at {url} has tables but no schema_info: it was not made by "
            "spinenode; point database.url at an empty or spinenode database")
    version = conn.execute(text("SELECT version FROM schema_info")).scalar()
    if version != PRE_ALEMBIC_VERSION:
        raise SchemaVersionError(
            f"the database at {url} has schema_info version {version} but no alembic_version: "
            f"spinenode never wrote that; only version {PRE_ALEMBIC_VERSION} (before Alembic) is upgraded")


def current_revision(conn: Connection, url: str) -> tuple[str | None, bool]:
    """The database's revision (None: empty; :data:`BASELINE` when made before Alembic), and
    whether Alembic manages it already.

    Raises ``SchemaVersionError`` for a revision this code does not know (a newer node's) and
    for a database spinenode did not make."""
    tables = set(inspect(conn).get_table_names())
    if "alembic_version" not in tables:
        if not tables:
            return None, False
        _pre_alembic_version(conn, url, tables)
        return BASELINE, False
    revision = MigrationContext.configure(conn).get_current_revision()
    known = {script.revision for script in scripts().walk_revisions()}
    if revision is not None and revision not in known:
        raise SchemaVersionError(
            f"the database at {url} is at schema revision {revision}, which this node does not know "
            f"(its newest is {head()}): a newer spinenode upgraded it. Run that version or a newer one")
    return revision, True


def upgrade(engine: Engine) -> Migration:
    """Bring the database to :func:`head` in one transaction (see the module's docstring) and
    say what changed (the caller logs it: this runs before logging is set up in some commands).

    Raises ``SchemaVersionError`` as :func:`current_revision` does; a failing revision rolls
    the whole upgrade back."""
    url = engine.url.render_as_string(hide_password=True)
    with engine.connect() as conn, conn.begin():
        _lock(conn)
        before, managed = current_revision(conn, url)
        if before == head():
            return Migration(before=before, after=before)
        cfg = alembic_config(conn)
        if before is not None and not managed:
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, "head")
    return Migration(before=before, after=head())
