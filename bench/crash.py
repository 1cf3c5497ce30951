"""Crash trials: kill -9 `spinenode serve` at a random moment while studies arrive, restart it,
and check that nothing is lost and nothing is delivered twice.

    .venv/bin/python -m bench.crash --trials 20 --studies 3

Each trial, in a fresh folder: a receiving PACS (pynetdicom SCP in this process) is the node's
destination; `spinenode serve` runs as a subprocess; ``--studies`` phantom series (256x256) are
sent one association each; after a random delay (0.2 s to ``--max-kill-s``; with
``--when-running``, 0 s to ``--max-kill-s`` after a job started) the node gets SIGKILL (while
receiving, processing or sending, whichever it was doing); it is restarted, the sender re-sends
what was not acknowledged (as a PACS retries), and the trial waits until every study has its three
results in the PACS or ``--timeout`` passes, timing the restart to the last result. The node runs
with the shipped lease (300 s) unless ``--lease-s`` says otherwise: a job interrupted by the crash
must come back because the restarted node recognises its dead predecessor's lease, not because the
lease ran out. Then it checks: every acknowledged
instance is on disk and in the database; every complete study has exactly one set of results
(SEG, SR, key image) in the PACS; deliveries of the same SOP Instance UID twice (harmless for a
PACS, counted anyway); jobs left queued or running (stuck). Prints one line per trial and totals.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pynetdicom import AE, AllStoragePresentationContexts, evt

from dicomnode.errors import NodeError
from dicomnode.scu import send_files
from phantom import generate_study, write_study

REPO = Path(__file__).resolve().parent.parent
RESULTS_PER_STUDY = 3


class Pacs:
    """Records the SOP Instance UID and Study UID of everything it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        ae = AE(ae_title="PACS")
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(str(cx.abstract_syntax))
        server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        assert server is not None
        self.server = server
        self.port = server.server_address[1]

    def _store(self, event) -> int:  # noqa: ANN001
        ds = event.dataset
        with self.lock:
            self.received.append((str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)))
        return 0x0000

    def results(self, study_uid: str) -> set[str]:
        with self.lock:
            return {sop for study, sop in self.received if study == study_uid}

    def stop(self) -> None:
        self.server.shutdown()


def write_config(folder: Path, pacs_port: int, *, workers: int = 1, quiet_period_s: float = 30.0,
                 lease_s: float = 300.0) -> Path:
    """`folder/config.toml` for a node on an OS-chosen port sending to ``pacs_port``; ``workers=0``:
    `serve` only receives, assembles and sends (`spinenode worker` then analyses)."""
    path = folder / "config.toml"
    path.write_text(f"""[node]
ae_title = "SPINENODE"
host = "127.0.0.1"
port = 0
data_dir = "var"
min_free_disk_mb = 0
[protocol]
quiet_period_s = {quiet_period_s}
check_interval_s = 0.5
[worker]
workers = {workers}
lease_s = {lease_s}
heartbeat_s = {min(20.0, lease_s / 3)}
poll_interval_s = 0.2
retry_base_s = 0.5
[sender]
retry_base_s = 0.3
retry_max_s = 2.0
poll_interval_s = 0.2
max_attempts = 50
[logging]
console = false
[http]
port = 0
[[destinations]]
name = "pacs"
ae_title = "PACS"
host = "127.0.0.1"
port = {pacs_port}
""")
    return path


class NodeProcess:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.port_file = config.parent / "var" / "run" / "scp.port"
        self.port_file.unlink(missing_ok=True)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.stderr = config.parent / f"serve-{time.monotonic_ns()}.stderr"
        with self.stderr.open("wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "dicomnode", "serve", "--config", str(config)],
                                         cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=err)

    def port(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.stderr.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"node exited with {self.proc.returncode}: {err}")
            if self.port_file.exists() and self.port_file.read_text().strip():
                return int(self.port_file.read_text())
            time.sleep(0.05)
        raise RuntimeError("node did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Trial:
    sent: int = 0
    acknowledged: set[str] = field(default_factory=set)
    stored_on_disk: int = 0
    in_database: int = 0
    studies: int = 0
    complete_with_results: int = 0
    duplicates: int = 0
    extra_results: int = 0
    stuck_jobs: int = 0
    killed_while: str = ""
    seconds: float = 0.0
    restart_to_results_s: float | None = None  # from the restart until every study had its results

    @property
    def lost(self) -> int:
        return len(self.acknowledged) - min(self.stored_on_disk, self.in_database)

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.complete_with_results == self.studies and self.extra_results == 0
                and self.stuck_jobs == 0)


def _send(series: list[list[Path]], port: int, acked: set[str], uids: dict[Path, str]) -> None:
    for files in series:
        todo = [f for f in files if uids[f] not in acked]
        if not todo:
            continue
        try:
            results = send_files(todo, "SPINENODE", "127.0.0.1", port, calling_ae="MODALITY", timeout=10)
        except (NodeError, OSError, RuntimeError):
            return  # node down: the rest is sent again after the restart
        acked.update(uids[r.path] for r in results if r.status == 0)


def _job_running(db_path: Path) -> bool:
    if not db_path.exists():
        return False
    db = sqlite3.connect(db_path)
    try:
        return bool(db.execute("SELECT count(*) FROM jobs WHERE lower(state) = 'running'").fetchone()[0])
    except sqlite3.OperationalError:  # schema not there yet
        return False
    finally:
        db.close()


def run_trial(folder: Path, studies: list[Path], kill_after_s: float, timeout_s: float = 120,
              when_running: bool = False, lease_s: float = 300.0) -> Trial:
    """One trial; ``when_running``: wait until a job is running, then kill after ``kill_after_s``.
    ``lease_s``: the node's job lease (300 s as shipped)."""
    started = time.monotonic()
    pacs = Pacs()
    trial = Trial(studies=len(studies))
    series = [sorted((s / "series").glob("*.dcm")) for s in studies]
    uids = {f: str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for files in series for f in files}
    study_uids = [str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID) for files in series]
    trial.sent = len(uids)
    config = write_config(folder, pacs.port, lease_s=lease_s)
    node = NodeProcess(config)
    try:
        port = node.port()
        sender = threading.Thread(target=_send, args=(series, port, trial.acknowledged, uids))
        sender.start()
        if when_running:
            deadline = time.monotonic() + 60
            while not _job_running(folder / "var" / "spinenode.db") and time.monotonic() < deadline:
                time.sleep(0.05)
        time.sleep(kill_after_s)
        delivered = sum(len(pacs.results(u)) for u in study_uids)
        doing = {"receiving": len(trial.acknowledged) < trial.sent,
                 "processing": _job_running(folder / "var" / "spinenode.db"),
                 "sending": 0 < delivered < RESULTS_PER_STUDY * len(studies)}
        trial.killed_while = "+".join(k for k, v in doing.items() if v) or "idle"
        node.kill()
        sender.join()
        restarted = time.monotonic()
        node = NodeProcess(config)
        _send(series, node.port(), trial.acknowledged, uids)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(len(pacs.results(u)) >= RESULTS_PER_STUDY for u in study_uids):
                trial.restart_to_results_s = time.monotonic() - restarted
                break
            time.sleep(0.2)
        time.sleep(1.0)  # anything sent twice arrives now
    finally:
        node.stop()
        pacs.stop()
    data = folder / "var"
    on_disk = {p.stem for p in (data / "instances").rglob("*.dcm")}
    db = sqlite3.connect(data / "spinenode.db")
    try:
        in_db = {row[0] for row in db.execute("SELECT sop_instance_uid FROM instances")}
        trial.stuck_jobs = db.execute("SELECT count(*) FROM jobs "
                                      "WHERE lower(state) IN ('queued', 'running', 'failed')").fetchone()[0]
    finally:
        db.close()
    trial.stored_on_disk = len(trial.acknowledged & on_disk)
    trial.in_database = len(trial.acknowledged & in_db)
    counts = Counter(sop for _, sop in pacs.received)
    trial.duplicates = sum(n - 1 for n in counts.values())
    for u in study_uids:
        n = len(pacs.results(u))
        trial.complete_with_results += n == RESULTS_PER_STUDY
        trial.extra_results += max(0, n - RESULTS_PER_STUDY)
    trial.seconds = time.monotonic() - started
    return trial


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--studies", type=int, default=3)
    parser.add_argument("--max-kill-s", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--when-running", action="store_true",
                        help="kill once a job is running (at a random moment up to --max-kill-s after)")
    parser.add_argument("--lease-s", type=float, default=300.0, help="worker.lease_s of the node (300 as shipped)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="spinenode-crash-") as tmp:
        root = Path(tmp)
        studies = [write_study(generate_study(700 + i, matrix=(256, 256)), root / "phantom")
                   for i in range(args.studies)]
        trials = []
        for k in range(args.trials):
            folder = root / f"trial{k}"
            folder.mkdir()
            kill = rng.uniform(0.0 if args.when_running else 0.2, args.max_kill_s)
            t = run_trial(folder, studies, kill, when_running=args.when_running, lease_s=args.lease_s)
            trials.append(t)
            print(f"trial {k + 1:2d}: kill -9 at {kill:5.2f} s ({t.killed_while:>20}): acknowledged "
                  f"{len(t.acknowledged)}/{t.sent}, on disk {t.stored_on_disk}, in db {t.in_database}, studies "
                  f"with one result set {t.complete_with_results}/{t.studies}, re-deliveries {t.duplicates}, "
                  f"stuck jobs {t.stuck_jobs}, restart to results {_secs(t.restart_to_results_s)}  "
                  f"[{'ok' if t.ok else 'FAIL'}] {t.seconds:.0f} s", flush=True)
    print(f"\n{len(trials)} trials: acknowledged {sum(len(t.acknowledged) for t in trials)}, "
          f"stored {sum(min(t.stored_on_disk, t.in_database) for t in trials)}, lost {sum(t.lost for t in trials)}; "
          f"studies complete {sum(t.complete_with_results for t in trials)}/{sum(t.studies for t in trials)}; "
          f"extra result sets {sum(t.extra_results for t in trials)}; same-UID re-deliveries "
          f"{sum(t.duplicates for t in trials)}; stuck jobs {sum(t.stuck_jobs for t in trials)}; "
          f"killed while {dict(Counter(t.killed_while for t in trials))}")
    recovery = [t.restart_to_results_s for t in trials if t.restart_to_results_s is not None]
    if recovery:
        print(f"restart to every study's results: median {statistics.median(recovery):.1f} s, "
              f"max {max(recovery):.1f} s, {len(recovery)}/{len(trials)} trials within the timeout "
              f"(lease {args.lease_s:g} s)")
    return 0 if all(t.ok for t in trials) else 1


def _secs(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.1f} s"


if __name__ == "__main__":
    raise SystemExit(main())
