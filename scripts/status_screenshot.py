"""Make `docs/status-page.png`: a node with three phantom studies, its status page in headless Chromium.

    .venv/bin/python scripts/status_screenshot.py [--out docs/status-page.png]

Starts `spinenode serve` (OS-chosen ports, a pynetdicom PACS in this process receiving the
results), writes three phantom studies with `spinenode synth` (one of them dynamic), sends them,
waits until every job has ended, then Debian's `chromium --headless --screenshot` takes the page.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.crash import NodeProcess, write_config  # noqa: E402
from bench.external import ResultPacs  # noqa: E402
from dicomnode.scu import send_files  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "status-page.png")
    args = parser.parse_args()
    browser = shutil.which("chromium")
    if browser is None:
        print("chromium is not installed (scripts/install.sh --test installs it)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for seed, phases in ((101, "1"), (102, "4"), (103, "1")):
            subprocess.run([sys.executable, "-m", "dicomnode", "synth", "--out", str(folder / "studies"),
                            "--studies", "1", "--seed", str(seed), "--phases", phases, "--matrix", "256x256"],
                           check=True, capture_output=True)
        pacs = ResultPacs()
        node = NodeProcess(write_config(folder, pacs.port, quiet_period_s=2.0))
        try:
            port = node.port()
            series = sorted(p for p in (folder / "studies").rglob("series") if p.is_dir())
            for s in series:
                send_files(sorted(s.glob("*.dcm")), "SPINENODE", "127.0.0.1", port, calling_ae="STORESCU")
            _wait_for_jobs(folder / "config.toml", len(series))
            http_port = int((folder / "var" / "run" / "http.port").read_text())
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={folder / 'profile'}", "--virtual-time-budget=5000",
                            "--window-size=1280,1500", f"--screenshot={args.out}", f"http://127.0.0.1:{http_port}/"],
                           check=True, capture_output=True, timeout=120)
        finally:
            node.stop()
            pacs.server.shutdown()
    print(f"wrote {args.out}")
    return 0


def _wait_for_jobs(config: Path, count: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run([sys.executable, "-m", "dicomnode", "status", "--config", str(config), "--json"],
                             capture_output=True, text=True, check=True)
        jobs = json.loads(out.stdout)["jobs"]
        outbox = json.loads(out.stdout)["outbox"]
        if sum(jobs.get(s, 0) for s in ("done", "abstained", "dead")) >= count and not outbox.get("pending"):
            return
        time.sleep(1)
    raise RuntimeError(f"{count} jobs did not end within {timeout} s")


if __name__ == "__main__":
    raise SystemExit(main())
