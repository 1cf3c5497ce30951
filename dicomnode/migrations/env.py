"""Alembic's environment: migrate on the connection :func:`dicomnode.migrations.upgrade` passes.

Run from the command line (``alembic -x url=sqlite:///var/spinenode.db ...`` with a
``script_location`` pointing here), it opens that URL instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from dicomnode.db import Base

config = context.config
connection = config.attributes.get("connection")


def run(conn: Connection) -> None:
    context.configure(connection=conn, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///var/spinenode.db ...")
    engine = create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
