"""The nightly HTML report, rendered by a real headless browser (Debian's chromium and chromedriver,
installed by .ci/run): the page renders, every embedded image loads, the gate's decision is on top."""
from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import run_chain
from kd_tasks.stages import html_report

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("KD_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("KD_CHROMEDRIVER", shutil.which("chromedriver") or "/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} is missing: install Debian's chromium and chromium-driver (.ci/run does)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,2400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def _images(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, "
        "h: i.naturalHeight}))")


def test_the_nights_page_renders_with_its_plots_and_decision(kd_home, tiny_teacher, browser):
    from selenium.webdriver.common.by import By

    out = run_chain()
    page = Path(out["report"]).parent / "report.html"
    assert page.exists(), "write_report writes the page beside report.json"
    report = json.loads(Path(out["report"]).read_text())
    browser.get(page.as_uri())
    decision = browser.find_element(By.ID, "decision").text
    assert f"Gate decision: {report['gate']['decision']}" in decision
    assert report["outcome"]["outcome"] in decision
    # the decision comes before any table or plot
    assert browser.execute_script("return document.body.firstElementChild.nextElementSibling.nextElementSibling.id") \
        == "decision"
    images = _images(browser)
    assert {i["alt"] for i in images} >= {"per-class recall", "confusions", "agreement with the teacher",
                                          "latency distributions", "trend"}
    assert all(i["complete"] and i["w"] > 100 and i["h"] > 50 for i in images), images
    if os.environ.get("KD_REPORT_SCREENSHOT"):  # the README's picture of the page
        browser.save_screenshot(os.environ["KD_REPORT_SCREENSHOT"])
    checks = browser.find_elements(By.CSS_SELECTOR, "table")[1].text
    for c in report["gate"]["checks"]:
        assert c["name"] in checks
    # self-contained: every image inline, no stylesheet, script or frame to fetch
    assert browser.execute_script("return Array.from(document.images).every(i => i.src.startsWith('data:image/png'))")
    assert browser.execute_script("return document.querySelectorAll('link, script, iframe').length") == 0


def _binary_and_ranking(report: dict) -> list[dict]:
    """The product_category report rewritten as a binary and a ranking night (their own plots)."""
    binary = copy.deepcopy(report)
    for m in binary["evaluation"]["models"].values():
        m.pop("per_class_recall", None), m.pop("confusions", None)
        m["ece"], m["reliability"] = 0.05, [{"bin": b, "mean_p": b / 10 + 0.05, "observed": b / 10 + 0.02,
                                             "rows": 10} for b in range(10)]
    ranking = copy.deepcopy(binary)
    ranking["evaluation"]["metric"] = "ndcg_at_10"
    for m in ranking["evaluation"]["models"].values():
        m.pop("reliability"), m.pop("ece")
        m["ndcg_at_10"], m["ndcg_by_candidates"] = 0.8, {"1-3 candidates": 0.9, "4-6 candidates": 0.7}
    return [binary, ranking]


def test_binary_and_ranking_nights_get_their_own_plots_and_a_trend_of_30_nights(kd_home, tiny_teacher, browser,
                                                                                tmp_path):
    out = run_chain()
    report = json.loads(Path(out["report"]).read_text())
    binary, ranking = _binary_and_ranking(report)
    for night, alt in ((binary, "reliability diagram"), (ranking, "NDCG by query bucket")):
        page = tmp_path / f"{alt}.html"
        page.write_text(html_report.render(night, [night]))
        browser.get(page.as_uri())
        images = _images(browser)
        assert alt in {i["alt"] for i in images} and all(i["complete"] and i["w"] > 100 for i in images)
    # the trend reads the runs' reports: the newest run of each night, at most 30 nights, oldest first
    runs = kd_home / "runs" / "product_category"
    for day in range(1, 36):
        night = copy.deepcopy(report)
        night.update(ds=f"2023-12-{day:02d}" if day <= 31 else f"2024-01-{day - 31:02d}", run_id=f"r{day}")
        (runs / f"r{day}").mkdir()
        (runs / f"r{day}" / "report.json").write_text(json.dumps(night))
    nights = html_report.history("product_category", report)
    assert len(nights) == 30 and nights[-1]["ds"] == report["ds"] == "2024-01-10"
    assert [n["ds"] for n in nights] == sorted(n["ds"] for n in nights)
