"""The rating app in a real headless Chromium (Debian's chromium + chromedriver, installed by
`make test`): open an invitation (the information and consent page first), rate by keyboard
and by clicking, reload and resume, close the browser and resume, finish, export; a forged
link shows no data."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from study_fakes import fake_stage

from paincontrol_lib.study.app import create_app, make_server
from paincontrol_lib.study.design import build_trial_set, load_design, stage_candidates
from paincontrol_lib.study.store import Store, export_table

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _browser(profile: Path):
    """Chromium with a fresh profile; never selenium-manager (it would download a driver)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: `make test` installs chromium and "
                    "chromium-driver (apt-get) before running the tests")  # fmt: skip
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture
def served(tmp_path):
    """(base url, trials dir, store, invitation token, trials per rater) of a running server."""
    transfer, landmarks = fake_stage(tmp_path, slots_per_identity=1)
    trials_dir = tmp_path / "study"
    info = build_trial_set(stage_candidates(transfer, landmarks), trials_dir, items_per_method=2,
                           repeats=1, attention_checks=1, n_raters=1, seed=0)  # fmt: skip
    store = Store(tmp_path / "ratings.sqlite", info["design_id"])
    [(_, token)] = store.invite(load_design(trials_dir)[1], ["browser"])
    server = make_server(create_app(trials_dir, store), port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}", trials_dir, store, token, info
    server.close()


@pytest.fixture
def profiles():
    made = []

    def new():
        made.append(Path(tempfile.mkdtemp(prefix="chromium-")))
        return made[-1]

    yield new
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def _count(driver) -> str:
    return driver.find_element("id", "count").text


def _wait_for(driver, text: str):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page may be replaced between finding <main> and reading it (the post's redirect).
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: text in _main_text(d))


def _main_text(driver) -> str:
    """<main>'s text, "" while the page is being replaced: Chromium may report an element of
    the old page as "does not belong to the document" rather than as stale."""
    from selenium.common.exceptions import WebDriverException

    try:
        return driver.find_element("tag name", "main").text
    except WebDriverException as exc:
        if "does not belong to the document" not in str(exc):
            raise
        return ""


def test_rate_resume_finish_export(served, profiles):
    from selenium.webdriver.common.keys import Keys

    base, trials_dir, store, token, info = served
    n = info["trials_per_rater"]
    link = f"{base}/r/{token}"
    driver = _browser(profiles())
    try:
        driver.get(link)
        # The first screen: information and consent, no image yet.
        assert "Rating face images: information" in driver.find_element("id", "information").text
        assert "voluntary" in driver.find_element("tag name", "main").text
        assert not driver.find_elements("id", "stimulus")
        driver.find_element("id", "agree").click()
        _wait_for(driver, f"Image 1 of {n}")
        assert _count(driver) == f"Image 1 of {n}"
        image = driver.find_element("id", "stimulus")
        assert driver.execute_script("return arguments[0].naturalWidth", image) == 64
        body = driver.find_element("tag name", "body")
        body.send_keys("3")  # keyboard: 3, then Enter
        assert driver.find_element("id", "realism3").is_selected()
        body.send_keys(Keys.ENTER)
        _wait_for(driver, f"Image 2 of {n}")
        driver.find_element("css selector", "label:has(#realism4)").click()  # mouse
        driver.find_element("css selector", "label:has(#pain7)").click()
        driver.find_element("id", "next").click()
        _wait_for(driver, f"Image 3 of {n}")
        driver.refresh()  # reload: still the third image
        _wait_for(driver, f"Image 3 of {n}")
        assert driver.find_element("id", "progress").get_attribute("value") == "2"
    finally:
        driver.quit()
    driver = _browser(profiles())  # the browser was closed: a new one, nothing stored in it
    try:
        driver.get(link)
        assert _count(driver) == f"Image 3 of {n}"
        for i in range(3, n + 1):
            assert _count(driver) == f"Image {i} of {n}"
            driver.find_element("tag name", "body").send_keys("5", Keys.ENTER)
            _wait_for(driver, f"Image {i + 1} of {n}" if i < n else "All images are rated")
        assert not driver.find_elements("id", "stimulus")
    finally:
        driver.quit()
    table = export_table(store, trials_dir)
    assert len(table) == n and sorted(table["position"]) == list(range(n))
    first = table.sort_values("position")
    assert first["realism"].tolist() == [3, 4] + [5] * (n - 2)
    assert first["pain"].isna().tolist() == [True, False] + [True] * (n - 2)
    assert first["pain"].iloc[1] == 7 and table["method"].notna().sum() == n - 1


def test_forged_link_shows_no_data(served, profiles):
    base, _, store, token, _ = served
    driver = _browser(profiles())
    try:
        driver.get(f"{base}/r/{token[::-1]}")
        text = driver.find_element("tag name", "body").text
        assert "This link is not valid." in text
        assert not driver.find_elements("tag name", "img")
        assert not driver.find_elements("tag name", "form")
        assert "Image" not in text and token[::-1] not in driver.page_source
    finally:
        driver.quit()
    assert store.ratings().empty
