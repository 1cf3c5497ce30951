"""The status page in a real browser: `spinenode serve` as a subprocess, a series sent with dcmtk
`storescu`, then Debian's headless Chromium loads the page (DOM after load, and a screenshot)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.acceptance.test_serve_storescu import served, status  # noqa: F401 - the fixture
from tests.conftest import require_tool, wait_for

pytestmark = pytest.mark.acceptance


def chromium(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    browser = require_tool("chromium")
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           f"--user-data-dir={profile}", "--hide-scrollbars", "--virtual-time-budget=5000",
                           *args, url], capture_output=True, text=True, timeout=120, check=False)


def test_chromium_shows_the_finished_job_and_its_key_image(served, phantom_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001, F811
    config, port, _ = served
    storescu = require_tool("storescu")
    run = subprocess.run([storescu, "-aet", "STORESCU", "-aec", "SPINENODE", "+sd", "127.0.0.1", str(port),
                          str(phantom_dir / "study_101" / "series")], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stderr
    wait_for(lambda: status(config)["jobs"]["done"] == 1, timeout=120)
    http_port = int((config.parent / "var" / "run" / "http.port").read_text())
    url = f"http://127.0.0.1:{http_port}/"

    dom = chromium(url, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert "spinenode <code>SPINENODE</code>" in page and 'class="state-done">done' in page
    assert 'id="key-image"' in page and "P(metastasis)" in page and "unet " in page

    shot = tmp_path / "status.png"
    run = chromium(url, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,1600")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (1600, 1280)
    # the page is light; the key image (an MR slice on black) is the only large dark area, so it loaded
    assert (pixels < 40).sum() > 100_000
