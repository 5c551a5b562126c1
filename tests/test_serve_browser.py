"""``rsb-tune serve`` in a real headless browser: Debian's chromium driven by Playwright for
Python (``executable_path`` set to the system browser; nothing is downloaded). A screenshot of
each page is kept under ``test-artefacts/serve/`` (git-ignored)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.serve_helpers import Server

CHROMIUM = os.environ.get("RSB_TUNE_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "test-artefacts" / "serve"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"),
]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the test extra)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--disable-gpu", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    external = []
    pg.on("request", lambda r: external.append(r.url) if not r.url.startswith(("http://127.0.0.1", "data:")) else None)
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not external, f"requests outside the server: {external}"
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture(scope="module")
def served(real_studies):
    storage, procs = real_studies
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, proc.stderr[-2000:])
    with Server(storage) as srv:
        yield srv


def _images_loaded(page, selector: str = "#figures img", timeout_s: float = 300) -> list[dict]:
    """Wait until the page shows figures and each has loaded with a non-zero size."""
    page.wait_for_selector(selector, timeout=timeout_s * 1000)
    page.wait_for_function(
        f"() => {{ const im = [...document.querySelectorAll({json.dumps(selector)})]; return im.length > 0 && im.every(i => i.complete && i.naturalWidth > 0); }}",
        timeout=60_000,
    )
    return page.eval_on_selector_all(selector, "im => im.map(i => ({name: i.dataset.figure, w: i.naturalWidth, h: i.naturalHeight}))")


def test_index_finds_the_studies(page, served):
    page.goto(served.url + "/")
    names = page.eval_on_selector_all("tr.study-row", "rows => rows.map(r => r.dataset.name)")
    assert sorted(names) == ["g", "s", "s3"]
    assert page.locator("tr.study-row[data-name=s] td.done").inner_text() == "3"
    page.select_option("#kind-filter", "grid")
    page.wait_for_url("**/?kind=grid")
    assert page.eval_on_selector_all("tr.study-row", "rows => rows.map(r => r.dataset.name)") == ["g"]
    page.goto(served.url + "/")
    page.screenshot(path=str(SHOTS / "index.png"), full_page=True)


def test_finished_seed_study_draws_its_figures(page, served):
    page.goto(served.url + "/studies/s")
    images = _images_loaded(page)
    names = {i["name"] for i in images}
    assert {"histogram_val_top1", "histogram_v2_top1", "epoch_variance_val_top1", "expected_max", "split_correlation"} <= names
    assert all(i["w"] > 0 and i["h"] > 0 for i in images)
    assert page.locator("#done").inner_text() == "3" and page.locator("#state").inner_text() == "finished"
    assert page.locator("table.seed-table tbody tr").count() >= 2
    page.click("#trials th[data-key=val_top1]")  # sortable: ascending, then descending
    first = [float(x) for x in page.eval_on_selector_all("#trials tbody tr td:nth-child(4)", "c => c.map(x => x.dataset.v)")]
    assert first == sorted(first)
    page.click("#trials th[data-key=val_top1]")
    second = [float(x) for x in page.eval_on_selector_all("#trials tbody tr td:nth-child(4)", "c => c.map(x => x.dataset.v)")]
    assert second == sorted(first, reverse=True)
    page.screenshot(path=str(SHOTS / "study-seeds.png"), full_page=True)


def test_grid_study_draws_its_ranking(page, served):
    page.goto(served.url + "/studies/g")
    names = {i["name"] for i in _images_loaded(page)}
    assert {"grid_summary", "grid_heatmap"} <= names
    assert page.locator("table.grid-table tbody tr").count() == 4
    page.screenshot(path=str(SHOTS / "study-grid.png"), full_page=True)


def _fits_the_window(page) -> None:
    scroll, client = page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert scroll <= client, f"a horizontal scrollbar: the page is {scroll} px wide in a {client} px window"


@pytest.mark.parametrize("name", ["s", "g"])
def test_study_page_and_report_fit_a_1280_px_window(page, served, name):
    page.goto(f"{served.url}/studies/{name}")
    _images_loaded(page)
    _fits_the_window(page)
    page.goto(f"{served.url}/studies/{name}/report/")
    assert len(_images_loaded(page, "img")) >= 1  # every figure of the report loaded
    _fits_the_window(page)
    text = page.locator("body").inner_text()
    assert "ImageNet" not in text and "git_commit" in text and "NA\n" not in text.split("git_commit")[1][:40]
    page.screenshot(path=str(SHOTS / f"report-{name}.png"), full_page=True)


def test_compare_page(page, served):
    page.goto(served.url + "/compare?a=s&b=s3")
    page.wait_for_selector("#compare-table tbody tr", timeout=300_000)
    assert "val_top1" in page.locator("#compare-table").inner_text()
    _images_loaded(page)
    page.screenshot(path=str(SHOTS / "compare.png"), full_page=True)


def test_missing_study_is_a_404_page(page, served):
    response = page.goto(served.url + "/studies/no-such-study")
    assert response.status == 404
    assert "404" in page.locator("h1").inner_text()
    page.screenshot(path=str(SHOTS / "not-found.png"), full_page=True)


def test_running_study_done_count_rises_without_reload(page, tmp_path):
    storage = tmp_path / "live-storage"
    storage.mkdir()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    driver = subprocess.Popen(
        [sys.executable, "-m", "rsb_tune", "seeds", "--n", "3", "--recipe", "A2", "--epochs", "2", "--storage", str(storage), "--name", "live", "--max-concurrent", "1", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        with Server(storage) as srv:
            import httpx

            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                studies = httpx.get(f"{srv.url}/api/studies").json()["studies"]
                if studies and studies[0]["state"] == "running" and studies[0]["done"] < 3:
                    break
                assert driver.poll() is None, driver.stdout.read()
                time.sleep(0.5)
            else:
                pytest.fail("the live study never showed up as running")
            page.goto(f"{srv.url}/studies/live")
            page.evaluate("() => { window.__notReloaded = true; }")
            start = int(page.locator("#done").inner_text())
            assert page.locator("#state").inner_text() == "running"
            page.wait_for_function(f"() => Number(document.querySelector('#done').textContent) > {start}", timeout=300_000)
            assert page.evaluate("() => window.__notReloaded === true"), "the page reloaded instead of refreshing its live part"
            page.screenshot(path=str(SHOTS / "study-running.png"), full_page=True)
            page.wait_for_function("() => document.querySelector('#state').textContent === 'finished'", timeout=300_000)
            assert page.locator("#done").inner_text() == "3"
            assert page.evaluate("() => window.__notReloaded === true")
        assert driver.wait(300) == 0
    finally:
        if driver.poll() is None:
            driver.terminate()
            driver.wait(60)
        shutil.rmtree(storage, ignore_errors=True)
