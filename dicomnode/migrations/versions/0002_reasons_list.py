"""Reasons as a list: ``series.reason`` and ``jobs.reason`` ("slice_count,gap") become
``reasons``, a JSON array (["slice_count", "gap"]); ``schema_info.version`` becomes 2, so a node
made before Alembic refuses the upgraded database instead of misreading it.

Revision ID: 0002. Revises: 0001.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("series", "jobs")


def _split(text: str | None) -> list[str] | None:
    """ "a,b" -> ["a", "b"]; empty -> None (the codes are kept as they were written)."""
    codes = [c.strip() for c in (text or "").split(",") if c.strip()]
    return codes or None


def _join(codes: list[str] | None) -> str | None:
    return ",".join(codes) if codes else None


def _copy(table: str, source: sa.ColumnClause, target: sa.ColumnClause, convert: Callable[[Any], Any]) -> None:
    """Set ``target`` from ``source`` on every row of ``table`` that has one."""
    t = sa.table(table, sa.column("id", sa.Integer()), source, target)
    bind = op.get_bind()
    rows = bind.execute(sa.select(t.c.id, t.c[source.name]).where(t.c[source.name].is_not(None))).all()
    for row_id, value in rows:
        bind.execute(sa.update(t).where(t.c.id == row_id).values({target.name: convert(value)}))


def upgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("reasons", sa.JSON(none_as_null=True), nullable=True))
        _copy(table, sa.column("reason", sa.String(64)), sa.column("reasons", sa.JSON(none_as_null=True)), _split)
        op.drop_column(table, "reason")
    op.execute("UPDATE schema_info SET version = 2")


def downgrade() -> None:
    for table in TABLES:
        op.add_column(table, sa.Column("reason", sa.String(length=64), nullable=True))
        _copy(table, sa.column("reasons", sa.JSON(none_as_null=True)), sa.column("reason", sa.String(64)), _join)
        op.drop_column(table, "reasons")
    op.execute("UPDATE schema_info SET version = 1")
