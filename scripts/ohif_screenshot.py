"""Make `docs/ohif-demo.png`: the demo study's SR in OHIF Viewer, the lesion's outline and axes on the MR slice.

    .venv/bin/python scripts/ohif_screenshot.py [--out docs/ohif-demo.png] [--seed 1]

Runs `spinenode demo --viewer` (Debian's Orthanc routing the phantom study to the node, OHIF
Viewer on the results; scripts/install.sh --test installs all of it) on a throw-away
configuration, opens the printed URL in headless Chromium (Selenium and Debian's chromedriver,
as the acceptance tests do), puts the SR series in the viewport, waits until its measurements are
drawn, takes the screenshot (1600x1000) and stops the demo with Ctrl-C (SIGINT).

For a readable picture it does what a reader would: zooms in (2x) on the lesion, and moves the
axes' text box off the outline's (OHIF puts both at the right of the lesion, one over the other).
Nothing else in the page is touched.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.acceptance.ohif import Viewer, chromium  # noqa: E402

URL = re.compile(r"OHIF Viewer: (http://127\.0\.0\.1:\d+)/viewer\?StudyInstanceUIDs=([0-9.]+)")
# the lesion: the SR viewport's largest polyline (its outline), in canvas coordinates [x0, y0, x1, y1]
OUTLINE_JS = """
const svg = document.querySelector('[data-cy="viewport-pane"] svg.svg-layer');
const outline = Array.from(svg.querySelectorAll('polyline'))
  .map(p => (p.getAttribute('points').match(/-?[\\d.]+/g) || []).map(Number)).sort((a, b) => b.length - a.length)[0];
const xs = outline.filter((_, i) => i % 2 === 0), ys = outline.filter((_, i) => i % 2 === 1);
return [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
"""
# centre the viewport's camera on canvas point (x, y) and zoom in by `zoom` (Cornerstone3D's viewport API)
ZOOM_JS = """
const [x, y, zoom] = arguments;
const viewport = cornerstone.getEnabledElements()[0].viewport;
const centre = viewport.canvasToWorld([x, y]), camera = viewport.getCamera();
const position = camera.position.map((v, i) => v + centre[i] - camera.focalPoint[i]);
viewport.setCamera({focalPoint: centre, position});
viewport.setZoom(viewport.getZoom() * zoom);
viewport.render();
"""
# put the text box of the SR annotation with a "Long Axis" label at canvas point (x, y)
MOVE_AXES_TEXT_JS = """
const [x, y] = arguments;
const viewport = cornerstone.getEnabledElements()[0].viewport;
const axes = cornerstoneTools.annotation.state.getAllAnnotations().find(a =>
  a.metadata.toolName === 'DICOMSRDisplay' && (a.data.labels || []).some(l => l.label === 'Long Axis'));
axes.data.handles.textBox.worldPosition = viewport.canvasToWorld([x, y]);
viewport.render();
"""
CONFIG = """[node]
data_dir = "var"
min_free_disk_mb = 0
[protocol]
quiet_period_s = 2.0
check_interval_s = 0.5
[logging]
console = false
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "ohif-demo.png")
    parser.add_argument("--seed", type=int, default=1, help="the demo's phantom study (its default: 1)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "config.toml").write_text(CONFIG)
        demo = subprocess.Popen([sys.executable, "-m", "dicomnode", "demo", "--viewer", "--config", "config.toml",
                                 "--out", "demo", "--seed", str(args.seed)], cwd=folder, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"})
        try:
            origin, study = _viewer_url(demo)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            _screenshot(origin, study, folder, args.out)
        finally:
            demo.send_signal(signal.SIGINT)
            demo.wait(60)
    print(f"wrote {args.out}")
    return 0


def _viewer_url(demo: subprocess.Popen, timeout: float = 600) -> tuple[str, str]:
    """(origin, study UID) from the demo's "OHIF Viewer: <url>" line; its output goes on to stdout."""
    found: list[re.Match] = []

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            sys.stdout.write(line)
            if match := URL.search(line):
                found.append(match)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found:
        if demo.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("`spinenode demo --viewer` printed no viewer URL")
        time.sleep(0.5)
    return found[0].group(1), found[0].group(2)


def _screenshot(origin: str, study: str, folder: Path, out: Path) -> None:
    with chromium(folder / "profile") as browser:
        browser.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                       {"width": 1600, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        viewer = Viewer(browser, origin)
        viewer.open_study(study)
        viewer.show_series("SR")
        viewer.wait(lambda: any(line.startswith("L: ") for line in viewer.annotation_lines()) or None,
                    "the SR's axes to be drawn")
        x0, y0, x1, y1 = browser.driver.execute_script(OUTLINE_JS)
        browser.driver.execute_script(ZOOM_JS, (x0 + x1) / 2, (y0 + y1) / 2, 2.0)
        time.sleep(1)
        x0, y0, x1, y1 = browser.driver.execute_script(OUTLINE_JS)
        browser.driver.execute_script(MOVE_AXES_TEXT_JS, x0 - 150, y1 + 20)
        time.sleep(2)  # the prompt's fade-in and the last render
        browser.screenshot(out)


if __name__ == "__main__":
    raise SystemExit(main())
