"""End to end: OHIF served by the real Orthanc + CBMIR plugin, driven in headless Chromium.

Opens a labelled study in /ohif/viewer and checks that the "Similar cases" panel opens on its own (it
has indexed images), that the results carry the labels of the imported data and a percentile that reads
with the raw cosine in its tooltip, that scrolling to another slice asks again for that slice, that the
label filter narrows the results and the summary then says a filter is on, that "Compare" shows the
chosen case beside the study (two viewports, frames of both studies, the panel still open) with one
click back, that a study the plugin cannot index (a CT) does not open the panel and shows as such, and
that Orthanc Explorer's button opens the viewer. Saves screenshots of the panel, the compare view and the filtered
panel to tests/artifacts/ (git-ignored); `make docs-screenshot` runs this test with CBMIR_SCREENSHOT
pointing at the README's docs/images/similar-cases-panel.png, so `make test` never rewrites a tracked
file.

Needs: Debian's chromium (/usr/bin/chromium), node, the built viewer (`make -C viewer-extension build`,
which `make test` runs first, installs playwright-core) and ../shared/data/figshare-cheng.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VIEWER = REPO / "viewer-extension"
DRIVER = Path(__file__).with_name("similar_cases_e2e.mjs")
MANIFEST = REPO.parent / "shared" / "data" / "figshare-cheng" / "manifest.csv"
CHROMIUM = os.environ.get("CBMIR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"  # git-ignored
SCREENSHOT = Path(os.environ.get("CBMIR_SCREENSHOT", ARTIFACTS / "similar-cases-panel.png"))
PER_LABEL_PATIENTS = 6
SLICES = 3
QUERY_LABEL = "glioma"
FILTER_LABEL = "meningioma"

pytestmark = [pytest.mark.orthanc, pytest.mark.viewer]


def _requirements() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (VIEWER / "node_modules" / "playwright-core").is_dir():
        return "playwright-core is not installed: run `make -C viewer-extension build`"
    if not (VIEWER / "dist" / "index.html").is_file():
        return "the viewer is not built: run `make -C viewer-extension build`"
    if not MANIFEST.is_file():
        return f"labelled data not found: {MANIFEST} (figshare-cheng from ../shared/data)"
    return None


@pytest.fixture
def viewer_orthanc(make_server):
    """A real Orthanc + CBMIR plugin of its own (conftest's `make_server`), so that what other tests
    store in the session server cannot crowd the results or the screenshot."""
    reason = _requirements()
    if reason:
        pytest.skip(reason)
    return make_server("viewer-e2e")


@pytest.fixture
def labelled_studies(viewer_orthanc):
    """Labelled multi-slice MR studies from figshare JPGs (the plugin tests' DICOM factory: one study of
    PER_LABEL_PATIENTS patients per label, SLICES slices each); {StudyInstanceUID: label} once indexed."""
    from support.dicom_factory import figshare_cases

    cases = figshare_cases(per_label_patients=PER_LABEL_PATIENTS, slices=SLICES)
    assert {QUERY_LABEL, FILTER_LABEL} <= {case.label for case in cases}
    for case in cases:
        viewer_orthanc.upload(case.data)
    status = viewer_orthanc.wait_idle()
    assert status["indexed"] >= len(cases), status
    return {case.study_uid: case.label for case in cases}


@pytest.fixture
def not_indexable_study(viewer_orthanc, labelled_studies):
    """A CT image: outside CBMIR.Modalities (MR), so the plugin answers 422 for it."""
    import numpy as np
    from PIL import Image
    from pydicom.uid import generate_uid
    from support.dicom_factory import FIGSHARE, mr_image

    study_uid = generate_uid()
    picture = next((FIGSHARE / "images" / QUERY_LABEL).glob("*.jpg"))
    pixels = np.asarray(Image.open(picture).convert("L"))
    answer = viewer_orthanc.upload(mr_image(pixels.astype(np.uint16) * 16, "CBMIR-E2E-CT", study_uid,
                                            generate_uid(), modality="CT"))
    viewer_orthanc.wait_idle()
    assert viewer_orthanc.get(f"/cbmir/similar/{answer['ID']}").status_code == 422
    return study_uid


def _orthanc_study_id(orthanc, study_uid: str) -> str:
    matches = orthanc.post("/tools/lookup", data=study_uid).json()
    return next(match["ID"] for match in matches if match["Type"] == "Study")


def _run_driver(orthanc, study_uid: str, tmp_path: Path, not_indexable: str | None = None) -> dict:
    spec = {"baseUrl": orthanc.url, "user": orthanc.auth[0], "password": orthanc.auth[1],
            "studyInstanceUid": study_uid, "filterLabel": FILTER_LABEL,
            "notIndexableStudyInstanceUid": not_indexable,
            "explorerStudyId": _orthanc_study_id(orthanc, study_uid),
            "screenshot": str(SCREENSHOT), "chromium": CHROMIUM, "timeoutMs": 60000,
            "compareScreenshot": str(ARTIFACTS / "viewer-e2e-compare.png"),
            "filterScreenshot": str(ARTIFACTS / "viewer-e2e-filtered-panel.png"),
            "failureScreenshot": str(ARTIFACTS / "viewer-e2e-failure.png")}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    process = subprocess.run(["node", str(DRIVER), str(spec_path)], capture_output=True, text=True,
                             timeout=300, cwd=REPO)
    lines = [line for line in process.stdout.splitlines() if line.startswith("E2E-RESULT ")]
    assert lines, f"the driver printed no result (rc {process.returncode}):\n{process.stderr[-3000:]}"
    seen = json.loads(lines[-1][len("E2E-RESULT "):])
    assert seen.get("ok"), (f"failed after steps {seen.get('steps')}: {seen.get('error')}\n"
                            f"console errors: {seen.get('consoleErrors')}\n"
                            f"page errors: {seen.get('pageErrors')}\n"
                            f"screenshot: {seen.get('failureScreenshot')}\n{orthanc.log_tail(2000)}")
    return seen


def test_similar_cases_panel_end_to_end(viewer_orthanc, labelled_studies, not_indexable_study, tmp_path):
    query_study = next(uid for uid, label in labelled_studies.items() if label == QUERY_LABEL)
    seen = _run_driver(viewer_orthanc, query_study, tmp_path, not_indexable_study)

    # the panel: its own icon and name, open on load because the study has indexed images
    assert seen["openedOnLoad"] is True
    assert seen["panelTab"]["count"] >= 1 and seen["panelTab"]["svg"]
    assert seen["panelTitle"] == "Similar cases"

    results = seen["results"]
    assert results, "the panel showed no results"
    assert all(result["hasOpen"] for result in results)
    assert query_study not in {result["studyInstanceUid"] for result in results}
    for result in results:  # each label shown is the label of that study in the data
        assert result["studyInstanceUid"] in labelled_studies, result
        assert result["label"] == labelled_studies[result["studyInstanceUid"]], result
    assert all(result["thumbnailLoaded"] for result in results)
    # from the plugin's renderer, not Orthanc 1.10's /preview (wrong for 8 bits stored in 16)
    assert all("/cbmir/thumbnail/" in result["thumbnailSrc"] for result in results), results
    # readable scores: a percentile, monotone with the raw cosine, which the tooltip keeps
    for result in results:
        assert 0 <= result["percentile"] <= 100, result
        assert result["similarityText"].startswith("closer than "), result
        assert f"{result['score']:.6f}" in result["similarityTooltip"], result
    ordered = sorted(results, key=lambda r: r["score"], reverse=True)
    assert [r["percentile"] for r in ordered] == sorted((r["percentile"] for r in results), reverse=True)

    assert seen["excludeSamePatientDefault"] is True
    assert f"of {len(results)} similar case" in seen["summary"]
    assert "not a diagnosis" in seen["summary"]

    assert seen["filtered"] and all(result["label"] == FILTER_LABEL for result in seen["filtered"])
    # with the filter on, the summary says so instead of "n of n are labelled <filter>"
    n = len(seen["filtered"])
    assert seen["filteredSummary"]["filtered"] == "true"
    assert "Label filter on" in seen["filteredSummary"]["text"]
    assert f"{n} of {n}" not in seen["filteredSummary"]["text"]

    # "Compare": the case beside the study, both on screen, the panel still open, one click back
    compare = seen["compare"]
    assert f"StudyInstanceUIDs={query_study},{compare['target']}" in compare["url"]
    assert "hangingProtocolId=@orthanc-cbmir/side-by-side" in compare["url"]
    assert compare["querySop"] == compare["readingSop"]  # the slice being read stays on screen
    assert compare["viewports"] == 2
    assert compare["target"] in compare["framesOf"] and query_study in compare["framesEver"]
    assert compare["panelOpen"] and compare["compareBar"] == compare["target"]
    assert compare["comparedCard"] == [compare["target"]]
    assert seen["back"], "no way back: the panel was not there after Compare"
    assert seen["back"]["url"].endswith(f"StudyInstanceUIDs={query_study}") or \
        f"StudyInstanceUIDs={query_study}&" in seen["back"]["url"]
    assert seen["back"]["viewports"] == 1 and seen["back"]["compareBar"] == 0
    # scrolling to another slice of the study makes the panel ask again, for that slice
    assert seen["scrolled"]["to"] != seen["scrolled"]["from"]
    assert seen["scrolled"]["results"] > 0

    assert seen["notIndexable"]["openedOnLoad"] is False  # nothing indexed: the panel stays closed
    assert seen["notIndexable"]["results"] == 0
    assert "cannot be searched" in seen["notIndexable"]["message"]
    assert "modality CT" in seen["notIndexable"]["message"]
    # Orthanc Explorer's study page opens the same study in the viewer
    assert seen["explorer"]["openedUrl"].endswith(f"/ohif/viewer?StudyInstanceUIDs={query_study}")
    assert not seen["pageErrors"], seen["pageErrors"]
    assert SCREENSHOT.is_file() and SCREENSHOT.stat().st_size > 10_000


def test_the_screenshot_of_a_test_run_goes_to_an_ignored_folder():
    """`make test` must leave the checkout clean: only `make docs-screenshot` (which sets
    CBMIR_SCREENSHOT) writes the tracked docs/images/similar-cases-panel.png."""
    if "CBMIR_SCREENSHOT" in os.environ:
        pytest.skip("CBMIR_SCREENSHOT is set (make docs-screenshot)")
    ignored = subprocess.run(["git", "check-ignore", "-q", str(SCREENSHOT)], cwd=REPO)
    if ignored.returncode == 128:
        pytest.skip("not a git checkout")
    assert ignored.returncode == 0, f"{SCREENSHOT} is not git-ignored"
