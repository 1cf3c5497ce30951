"""A throw-away PostgreSQL server from Debian's package: initdb as the `postgres` user in a
temporary folder, a Unix socket only (no TCP port), fsync off, removed on exit. Used by the
PostgreSQL tests and by `bench.workers`.

    with temporary_postgres() as server:
        url = server.create_database("spinenode")
"""

from __future__ import annotations

import contextlib
import glob
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


class PostgresMissing(RuntimeError):
    """Debian's postgresql package is not installed."""


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)


@dataclass(frozen=True)
class PostgresServer:
    bindir: Path
    socket_dir: Path

    def create_database(self, name: str) -> str:
        """Create ``name``; returns its SQLAlchemy URL (psycopg 3, over the Unix socket)."""
        _as_postgres(str(self.bindir / "createdb"), "-h", str(self.socket_dir), name)
        return f"postgresql+psycopg://postgres@/{name}?host={self.socket_dir}"


@contextlib.contextmanager
def temporary_postgres() -> Iterator[PostgresServer]:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bindirs:
        raise PostgresMissing("PostgreSQL is not installed: run scripts/install.sh --test")
    bindir = Path(bindirs[-1])
    root = Path(tempfile.mkdtemp(prefix="spinenode-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data, sock = root / "data", root / "sock"
    try:
        _as_postgres("mkdir", str(sock))
        _as_postgres(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "start", "-o",
                     f"-c listen_addresses='' -k {sock} -c fsync=off -c max_connections=200")
        try:
            yield PostgresServer(bindir, sock)
        finally:
            _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
