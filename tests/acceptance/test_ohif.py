"""The node's results in OHIF Viewer 3.13: a phantom study goes through Orthanc to `spinenode serve`
and back, then OHIF (headless Chromium, same origin as Orthanc's DICOMweb) opens the study and the
test reads the page: the study browser lists the SEG, SR and key image; the SEG loads with both
segments; the key image renders; the SR's lesion outline and axes are drawn, the axes' text giving
the SR's lengths in mm, without an error, and once tracked the measurement panel lists the axes
as a bidirectional measurement with those lengths.

Each test loads the viewer afresh, so one failing step does not hide the others, and writes its
screenshots to its own temporary folder (the browser console and the proxied requests go to the
module's folder, ``ohif*/``).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from tests.acceptance.ohif import Viewer, chromium, ohif_dist, ohif_server
from tests.acceptance.test_orthanc_routing import RESULT_MODALITIES, Env, by_study, storescu
from tests.conftest import wait_for

pytestmark = pytest.mark.acceptance
SEGMENT_LABELS = ("Lesion (U-Net)", "Lesion (region growing)")
# DICOMSRDisplayTool's text box lines are "<shorthand>: <value to 2 decimals> <unit>", its shorthand for
# "Long Axis" being "L: " (so "L: : 23.00 mm"); the measurement panel's bidirectional tool: "L: 23.0 mm"
SR_AXIS = re.compile(r"^(L|W): : (\d+\.\d\d) mm$")
PANEL_AXIS = re.compile(r"^(L|W): (\d+\.\d) mm$")
AXIS_CODES = {"103339001": "Long", "103340004": "Short"}


@pytest.fixture(scope="module")
def routed(tmp_path_factory: pytest.TempPathFactory, phantom_dir: Path) -> Iterator[tuple[Env, str]]:
    """Node and Orthanc running, the phantom study sent to Orthanc and its results back in it."""
    ohif_dist()  # skip before anything starts when the viewer is not there
    env = Env(tmp_path_factory.mktemp("ohif-env"))
    try:
        orthanc = env.start_orthanc()
        folder = phantom_dir / "study_101" / "series"
        study = pydicom.dcmread(next(folder.glob("*.dcm")), stop_before_pixels=True).StudyInstanceUID
        storescu(folder, orthanc.dicom_port)
        wait_for(lambda: {s["MainDicomTags"]["Modality"] for s in by_study(orthanc, study)} >= RESULT_MODALITIES,
                 timeout=180, interval=1.0)
        yield env, study
    finally:
        env.stop()


@pytest.fixture(scope="module")
def viewer(routed: tuple[Env, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Viewer]:
    env, _ = routed
    assert env.orthanc is not None
    folder = tmp_path_factory.mktemp("ohif")
    with ohif_server(ohif_dist(), env.orthanc.http_port) as server:
        try:
            with chromium(folder / "profile", folder / "console.txt") as browser:
                yield Viewer(browser, server.origin)
        finally:
            (folder / "requests.txt").write_text("\n".join(server.requests) + "\n")


@pytest.fixture(scope="module")
def sr_axes(routed: tuple[Env, str]) -> dict[str, float]:
    """The long and short axis (mm) of the SR in Orthanc, read with pydicom."""
    env, study_uid = routed
    assert env.orthanc is not None
    (series,) = [s for s in by_study(env.orthanc, study_uid) if s["MainDicomTags"]["Modality"] == "SR"]
    sr = pydicom.dcmread(io.BytesIO(env.orthanc.get_bytes(f"/instances/{series['Instances'][0]}/file")))
    found = {}
    stack = list(sr.ContentSequence)
    while stack:
        item = stack.pop()
        stack.extend(item.get("ContentSequence", []))
        code = item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else None
        if item.ValueType == "NUM" and code in AXIS_CODES:
            found[AXIS_CODES[code]] = float(item.MeasuredValueSequence[0].NumericValue)
    assert set(found) == {"Long", "Short"}, found
    return found


@pytest.fixture
def study(routed: tuple[Env, str]) -> str:
    return routed[1]


def test_the_study_browser_lists_the_seg_sr_and_key_image(viewer: Viewer, study: str, tmp_path: Path) -> None:
    series = viewer.open_study(study)
    viewer.browser.screenshot(tmp_path / "1-study.png")
    modalities = sorted(m for m, _ in series)
    assert modalities == ["MR", "OT", "SEG", "SR"], series
    results = [description for modality, description in series if modality != "MR"]
    assert all(d.endswith("(NOT FOR DIAGNOSIS)") for d in results), results


def test_the_seg_loads_with_both_segments(viewer: Viewer, study: str, tmp_path: Path) -> None:
    viewer.open_study(study)
    viewer.show_series("SEG")
    viewer.answer_viewport_prompt("Do you want to open this Segmentation?")
    viewer.open_panel("panelSegmentation")
    def listed() -> list[str] | None:
        found = viewer.segment_labels()
        return found if set(SEGMENT_LABELS) <= set(found) else None

    labels = viewer.wait(listed, f"the segmentation panel to list {SEGMENT_LABELS}")
    # the labelmap is drawn: coloured pixels over the grey MR slice
    viewer.wait(lambda: viewer.canvas_stats()[2] > 1e-4 or None, "the segments to be drawn over the MR slice")
    viewer.browser.screenshot(tmp_path / "2-seg.png")
    assert labels == list(SEGMENT_LABELS)


def test_the_key_image_displays(viewer: Viewer, study: str, tmp_path: Path) -> None:
    viewer.open_study(study)
    viewer.show_series("OT")
    viewer.wait(lambda: "AI key image" in viewer.viewport_text("top-left") or None,
                "the viewport to show the key image")

    def rendered() -> tuple[float, float, float] | None:
        stats = viewer.canvas_stats()
        return stats if stats[0] > 0.2 else None

    lit, spread, coloured = viewer.wait(rendered, "the key image to be rendered")
    viewer.browser.screenshot(tmp_path / "3-key-image.png")
    # an MR slice (grey levels that vary) with the lesion outlines in colour, not a blank or flat canvas
    assert spread > 20 and coloured > 1e-4, (lit, spread, coloured)


def test_the_sr_draws_the_outline_and_axes_and_its_axes_can_be_tracked(viewer: Viewer, study: str,
                                                                        sr_axes: dict[str, float],
                                                                        tmp_path: Path) -> None:
    """The SR viewport (DICOMSRDisplayTool, read-only) draws the lesion's outline (TID 1410) and its
    two axes (TID 1501), the axes' text box reading the SR's NUMs; it asks whether to track the
    study's measurements, and "Yes" turns the axes group (its tracking identifier names
    Cornerstone's Bidirectional tool) into a tracked bidirectional measurement on the MR slice,
    listed in the measurement panel. OHIF keeps no tool for the outline or the volumetric group."""
    viewer.open_study(study)
    viewer.open_panel("trackedMeasurements")
    assert "No tracked measurements" in viewer.panel_text("trackedMeasurements")
    seen = len(viewer.browser.console())
    viewer.show_series("SR")

    def drawn_or_crashed() -> list[str] | None:
        lines = viewer.annotation_lines()
        if sum(bool(SR_AXIS.match(line)) for line in lines) == 2:
            return lines
        crashed = any("Error Boundary" in e["message"] for e in viewer.browser.console()[seen:])
        return ["(OHIF's error boundary caught the SR's load)"] if crashed else None

    lines = viewer.wait(drawn_or_crashed, "the SR's measurements to be drawn")
    viewer.browser.screenshot(tmp_path / "4-sr.png")
    loading = [e["message"][:300] for e in viewer.browser.console()[seen:]]
    assert [m for m in loading if "Error Boundary" in m or "TypeError" in m] == [], loading
    # the text box: the SR's values as OHIF prints them (toFixed(2))
    texts = {m[1]: m[2] for line in lines if (m := SR_AXIS.match(line))}
    assert texts == {"L": f"{sr_axes['Long']:.2f}", "W": f"{sr_axes['Short']:.2f}"}, lines
    assert "Area" in " ".join(lines), lines  # the outline's text box
    polylines, axes = viewer.sr_shapes()
    outlines = [p for p in polylines if p[0] >= 10]
    assert len(outlines) == 1 and len(axes) == 2, (polylines, axes)
    _, x0, y0, x1, y1 = outlines[0]
    for ax in axes:  # each axis crosses the outline's box, and their lengths keep the SR's ratio
        assert x0 - 2 <= (ax[0] + ax[2]) / 2 <= x1 + 2 and y0 - 2 <= (ax[1] + ax[3]) / 2 <= y1 + 2, (outlines, axes)
    long_px, short_px = sorted((math.dist(ax[:2], ax[2:]) for ax in axes), reverse=True)
    assert long_px / short_px == pytest.approx(sr_axes["Long"] / sr_axes["Short"], rel=0.03)

    tracking = len(viewer.browser.console())
    viewer.answer_viewport_prompt("Do you want to continue tracking measurements for this study?")
    rows = viewer.wait(lambda: (r := viewer.measurement_rows()) and len(r[0][1]) >= 2 and r or None,
                       "the measurement panel to list the SR's axes")
    viewer.wait(lambda: sum(bool(PANEL_AXIS.match(line)) for line in viewer.annotation_lines()) == 2 or None,
                "the tracked bidirectional measurement to be drawn on the MR slice")
    viewer.browser.screenshot(tmp_path / "5-tracked.png")
    assert len(rows) == 1 and rows[0][0] == "Neoplasm", rows
    values = {m[1]: float(m[2]) for line in rows[0][1] if (m := PANEL_AXIS.match(line))}
    # the Bidirectional tool measures its handles again (the SR's values are rounded to 0.1 mm)
    assert values == {"L": pytest.approx(sr_axes["Long"], abs=0.1), "W": pytest.approx(sr_axes["Short"], abs=0.1)}
    # dcmjs tries its tools on the groups without coordinates and logs what it catches; nothing else
    hydrating = [e["message"][:300] for e in viewer.browser.console()[tracking:]]
    uncaught = [m for m in hydrating if "Error Boundary" in m
                or ("TypeError" in m and "Unable to generate tool state" not in m)]
    assert uncaught == [], hydrating
