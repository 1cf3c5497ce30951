"""OHIF Viewer in headless Chromium for acceptance tests, on real components.

The viewer is OHIF's built ``dist/`` served by ``dicomnode.viewer`` (one origin for the app and
Orthanc's DICOMweb, the test Orthanc's user and password added by its proxy). Chromium is
Debian's, driven by Selenium through Debian's ``chromedriver``: nothing downloads a browser or a
driver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import pytest
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from dicomnode.errors import NodeError
from dicomnode.viewer import OhifServer, require_dist, serve_ohif
from dicomnode.viewer import ohif_dist as dist_folder
from tests.acceptance.orthanc import PASSWORD, USER
from tests.conftest import REPO, require_tool

T = TypeVar("T")


def ohif_dist() -> Path:
    """The unpacked OHIF ``dist/``; skips the test when scripts/install.sh --test has not put it there."""
    try:
        return require_dist(dist_folder(REPO))
    except NodeError as err:
        pytest.skip(str(err))


@contextmanager
def ohif_server(dist: Path, orthanc_port: int) -> Iterator[OhifServer]:
    """dicomnode.viewer's server in front of the test's Orthanc (its user and password)."""
    with serve_ohif(dist, orthanc_port, username=USER, password=PASSWORD) as server:
        yield server


@dataclass
class Browser:
    """A Selenium session on Debian's Chromium; ``console()`` is every browser console entry so far."""

    driver: Chrome
    entries: list[dict] = field(default_factory=list)

    def console(self) -> list[dict]:
        self.entries.extend(self.driver.get_log("browser"))
        return self.entries

    def screenshot(self, path: Path) -> Path:
        self.driver.save_screenshot(str(path))
        return path


@contextmanager
def chromium(profile: Path, console_log: Path | None = None) -> Iterator[Browser]:
    """Headless Chromium through chromedriver, both Debian's (the Service path keeps Selenium
    Manager from looking anything up). WebGL is SwiftShader's, as a machine without a GPU has.
    The console is written to ``console_log`` when the block ends."""
    options = Options()
    options.binary_location = require_tool("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1600,1000",
                "--use-angle=swiftshader", "--enable-unsafe-swiftshader", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = Chrome(options=options, service=Service(require_tool("chromedriver")))
    browser = Browser(driver)
    try:
        yield browser
    finally:
        try:
            if console_log is not None:
                console_log.write_text("".join(f"{e['level']} {e['message']}\n" for e in browser.console()))
        finally:
            driver.quit()


# What the page helpers read, in OHIF 3.13's DOM (the `data-cy` attributes are OHIF's own test hooks)
THUMBNAILS = '[data-cy="study-browser-thumbnail"], [data-cy="study-browser-thumbnail-no-image"]'
# the cine player's time slider, shown over a viewport with a 4D (dynamic) volume: 1..number of time points
TIME_SLIDER = '[data-cy="viewport-pane"] [role="slider"][aria-orientation="horizontal"]'
# a canvas' share of lit pixels, the spread of their grey values (0-255), and the share of strongly
# coloured pixels (a segment or an outline over a grey MR slice)
CANVAS_STATS_JS = """
const canvas = arguments[0], ctx = canvas.getContext('2d');
const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let lit = 0, coloured = 0, sum = 0, sq = 0, n = px.length / 4;
for (let i = 0; i < px.length; i += 4) {
  const r = px[i], g = px[i + 1], b = px[i + 2], grey = (r + g + b) / 3;
  if (grey > 16) lit++;
  if (Math.max(r, g, b) - Math.min(r, g, b) > 80) coloured++;
  sum += grey; sq += grey * grey;
}
return [lit / n, Math.sqrt(Math.max(0, sq / n - (sum / n) ** 2)), coloured / n];
"""


# the SR viewport's drawing (DICOMSRDisplayTool, SVG): per polyline its point count and bounding box
# [n, x0, y0, x1, y1]; every line [x1, y1, x2, y2] but the dotted ones linking a text box (those have a filter)
SR_SHAPES_JS = """
const svg = document.querySelector('[data-cy="viewport-pane"] svg.svg-layer');
if (!svg) return null;
const polylines = Array.from(svg.querySelectorAll('polyline')).map(p => {
  const v = (p.getAttribute('points').match(/-?[\\d.]+/g) || []).map(Number);
  const xs = v.filter((_, i) => i % 2 === 0), ys = v.filter((_, i) => i % 2 === 1);
  return [xs.length, Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)];
});
const lines = Array.from(svg.querySelectorAll('line:not([filter])')).map(l =>
  ['x1', 'y1', 'x2', 'y2'].map(a => Number(l.getAttribute(a))));
return [polylines, lines];
"""

# the SOP instance the viewport shows: a stack's current image; in a volume, the image of the time point
# shown (a dynamic volume's dimension group) whose plane holds the camera's focal point. (OHIF's "I:"
# overlay reads a volume's imageIds by slice index, which for a 4D series can name a neighbouring slice.)
SHOWN_INSTANCE_JS = """
const el = document.querySelector('[data-cy="viewport-pane"] .cornerstone-viewport-element');
const cs = window.cornerstone, vp = el && cs.getEnabledElement(el)?.viewport;
if (!vp || !vp.getCamera) return null;
let shown = null;
if (vp.type === 'stack') {
  shown = vp.getCurrentImageId();
} else {
  const { focalPoint: f, viewPlaneNormal: n } = vp.getCamera();
  const volumes = vp.getAllVolumeIds().map(id => cs.cache.getVolume(id)).filter(Boolean);
  const dynamic = volumes.find(v => v.getCurrentDimensionGroupImageIds);
  const ids = dynamic ? dynamic.getCurrentDimensionGroupImageIds() : (volumes[0] || {}).imageIds || [];
  let nearest = 0.5;
  for (const id of ids) {
    const p = (cs.metaData.get('imagePlaneModule', id) || {}).imagePositionPatient;
    const d = p && Math.abs((p[0] - f[0]) * n[0] + (p[1] - f[1]) * n[1] + (p[2] - f[2]) * n[2]);
    if (p && d < nearest) { nearest = d; shown = id; }
  }
}
return shown ? (cs.metaData.get('instance', shown) || {}).SOPInstanceUID || null : null;
"""
# OHIF's display sets of the study: modality, image count, and for a series OHIF splits into a 4D
# (dynamic) volume the tag it split by and the image count of each time point
DISPLAY_SETS_JS = """
return window.services.displaySetService.getActiveDisplaySets().map(d => ({
  modality: d.Modality, images: (d.instances || []).length,
  split: d.isDynamicVolume ? d.dynamicVolumeInfo.splittingTag : null,
  time_points: d.isDynamicVolume ? d.dynamicVolumeInfo.timePoints.map(t => t.length) : null}));
"""
# counts OHIF's viewport (re)mounts (CornerstoneViewportService.setViewportData); past the limit it stops
# passing them on, so that an endless re-mount loop (which starves the page and every WebDriver command)
# ends and the test can report it
REMOUNT_GUARD_JS = """
const service = window.services.cornerstoneViewportService, limit = arguments[0];
if (!service.remountGuard) {
  const mount = service.setViewportData;
  service.remountGuard = { count: 0, limit };
  service.setViewportData = function (...args) {
    service.remountGuard.count += 1;
    return service.remountGuard.count > service.remountGuard.limit ? undefined : mount.apply(this, args);
  };
}
service.remountGuard.count = 0;
service.remountGuard.limit = limit;
"""


@dataclass
class Viewer:
    """OHIF's viewer route as the test sees it: the study browser on the left, one viewport, the
    segmentation and measurement panels on the right. Every wait is explicit and generous."""

    browser: Browser
    origin: str
    timeout: float = 120.0

    @property
    def driver(self) -> Chrome:
        return self.browser.driver

    def wait(self, condition: Callable[[], T | None], what: str, timeout: float | None = None) -> T:
        """``condition()``'s first truthy value; on time-out, fails with ``what`` and the console's errors."""

        def check(_: object) -> T | None:
            try:
                return condition()
            except WebDriverException:  # stale or not yet attached elements: try again
                return None

        try:  # until() returns only a truthy value
            return cast(T, WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.5).until(check))
        except TimeoutException as err:  # say what was awaited and what the page logged
            errors = [e["message"][:300] for e in self.browser.console()
                      if e["level"] == "SEVERE" or "Error Boundary" in e["message"]]
            raise AssertionError(f"OHIF: {what} (not within {timeout or self.timeout} s); "
                                 f"console errors: {errors[-5:]}") from err

    def open_study(self, study_uid: str) -> list[tuple[str, str]]:
        """Loads the viewer on the study; returns the study browser's (modality, description) pairs."""
        self.driver.get(f"{self.origin}/viewer?StudyInstanceUIDs={study_uid}")
        self.wait(lambda: self.viewport_text("top-left"), "the first viewport to show its overlay")
        return self.series()

    def series(self) -> list[tuple[str, str]]:
        return [(t.find_element(By.CSS_SELECTOR, '[data-cy="series-modality-label"]').text,
                 t.find_element(By.CSS_SELECTOR, '[data-cy="series-description-label"]').text)
                for t in self.driver.find_elements(By.CSS_SELECTOR, THUMBNAILS)]

    def show_series(self, modality: str) -> None:
        """Double-clicks the study browser's thumbnail of ``modality`` into the active viewport."""
        thumbnails = self.driver.find_elements(By.CSS_SELECTOR, THUMBNAILS)
        match = [t for t in thumbnails
                 if t.find_element(By.CSS_SELECTOR, '[data-cy="series-modality-label"]').text == modality]
        assert len(match) == 1, f"one {modality} series in the study browser, found {len(match)}"
        ActionChains(self.driver).double_click(match[0]).perform()

    def answer_viewport_prompt(self, question: str, answer: str = "Yes") -> None:
        """Waits for the viewport's question (OHIF asks before it loads a SEG or tracks an SR) and answers it."""
        self.wait(lambda: question in self.driver.find_element(By.CSS_SELECTOR, '[data-cy="viewport-pane"]').text
                  or None, f"the viewport to ask {question!r}")
        pane = "//*[@data-cy='viewport-pane']"
        self.driver.find_element(By.XPATH, f"{pane}//button[normalize-space(.)='{answer}']").click()

    def open_panel(self, name: str) -> None:
        """Opens a right-hand panel: ``panelSegmentation`` or ``trackedMeasurements``."""
        self.driver.find_element(By.CSS_SELECTOR, f'[data-cy="{name}-btn"]').click()

    def segment_labels(self) -> list[str]:
        return [e.text for e in self.driver.find_elements(By.CSS_SELECTOR, '[data-cy="data-row-title"]')]

    def annotation_lines(self) -> list[str]:
        """The text boxes drawn over the viewport (SVG), one entry per line."""
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll('[data-cy=\"viewport-pane\"] svg text tspan'))"
            ".map(t => t.textContent)")

    def sr_shapes(self) -> tuple[list[list[float]], list[list[float]]]:
        """What the SR viewport draws: its polylines ([points, x0, y0, x1, y1]) and lines ([x1, y1, x2, y2])."""
        found = self.driver.execute_script(SR_SHAPES_JS)
        return (found[0], found[1]) if found else ([], [])

    def measurement_rows(self) -> list[tuple[str, list[str]]]:
        """The measurement panel's rows: (title, primary detail lines) each."""
        rows = self.driver.find_elements(By.CSS_SELECTOR, '[data-cy^="measurement-table-row-"]')
        return [(row.find_element(By.CSS_SELECTOR, '[data-cy="data-row-title"]').text,
                 [line.text for line in row.find_elements(
                     By.CSS_SELECTOR, '[data-cy="data-row-details-primary"] [data-cy="data-row-detail-line"]')])
                for row in rows]

    def jump_to_measurement(self, row: int = 0) -> None:
        """Clicks a measurement panel row: OHIF shows the measurement's image (in a 4D volume: its slice
        position, at the time point shown)."""
        rows = self.driver.find_elements(By.CSS_SELECTOR, '[data-cy^="measurement-table-row-"]')
        rows[row].find_element(By.CSS_SELECTOR, '[data-cy="data-row-title"]').click()

    def panel_text(self, name: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, f'[data-cy="{name}-panel"]').text

    def viewport_text(self, corner: str) -> str:
        return self.driver.find_element(By.CSS_SELECTOR, f'[data-cy="viewport-overlay-{corner}"]').text

    def shown_instance(self) -> str | None:
        """The SOP Instance UID of the image the viewport shows (in a dynamic volume: at the time point shown)."""
        return cast(str | None, self.driver.execute_script(SHOWN_INSTANCE_JS))

    def viewport_type(self) -> str | None:
        """Cornerstone's type of the viewport: "stack", or "orthographic" for a volume viewport."""
        return cast(str | None, self.driver.execute_script(
            "const el = document.querySelector('[data-cy=\"viewport-pane\"] .cornerstone-viewport-element');"
            "const vp = el && window.cornerstone.getEnabledElement(el)?.viewport; return vp ? vp.type : null;"))

    def display_sets(self) -> list[dict]:
        return cast(list[dict], self.driver.execute_script(DISPLAY_SETS_JS))

    def time_point(self) -> tuple[int, int] | None:
        """(time point shown, time points) from the cine player's time slider; None without one (not 4D)."""
        sliders = self.driver.find_elements(By.CSS_SELECTOR, TIME_SLIDER)
        if not sliders:
            return None
        return int(sliders[0].get_attribute("aria-valuenow") or 0), int(sliders[0].get_attribute("aria-valuemax") or 0)

    def show_time_point(self, wanted: int) -> None:
        """Moves the cine player's time slider (arrow keys, as a user would) to time point ``wanted``."""
        for _ in range(16):
            shown = self.wait(self.time_point, "the cine player's time slider")[0]
            if shown == wanted:
                return
            key = Keys.ARROW_RIGHT if shown < wanted else Keys.ARROW_LEFT
            self.driver.find_element(By.CSS_SELECTOR, TIME_SLIDER).send_keys(key)
            self.wait(lambda: (now := self.time_point()) is not None and now[0] != shown or None,  # noqa: B023
                      "the time slider to move")
        raise AssertionError(f"OHIF: the time slider did not reach time point {wanted}")

    def guard_remounts(self, limit: int) -> None:
        """Counts the viewport (re)mounts from now on and cuts them off past ``limit`` (REMOUNT_GUARD_JS)."""
        self.driver.execute_script(REMOUNT_GUARD_JS, limit)

    def remounts(self) -> int:
        return int(self.driver.execute_script("return window.services.cornerstoneViewportService.remountGuard.count"))

    def canvas_stats(self) -> tuple[float, float, float]:
        """(share of lit pixels, grey-level spread, share of coloured pixels) of the viewport's image."""
        canvas = self.driver.find_element(By.CSS_SELECTOR, '[data-cy="viewport-pane"] canvas.cornerstone-canvas')
        lit, spread, coloured = self.driver.execute_script(CANVAS_STATS_JS, canvas)
        return float(lit), float(spread), float(coloured)
