"""Headless Chromium for the browser tests: the system chromium and chromedriver, driven by
selenium. A test module's fixture is `yield from chromium(...)`; where either program is
missing or the browser does not start, the tests that use it are skipped (an environment
problem, not a failure of ours)."""
import os
import shutil
import tempfile

import pytest

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def chromium(window="1400,900", downloads=False):
    """Yield one headless Chromium driver with a throwaway profile (quit and removed after).
    window: "W,H" or None for the default; downloads: save downloads into the profile without asking."""
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.skip("chromium / chromedriver not installed")
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run") + ((f"--window-size={window}",) if window else ()):
        opts.add_argument(arg)
    profile = tempfile.mkdtemp(prefix="tx-chrome-")
    opts.add_argument(f"--user-data-dir={profile}")
    if downloads:
        opts.add_experimental_option("prefs", {"download.default_directory": os.path.join(profile, "downloads"),
                                               "download.prompt_for_download": False})
    opts.binary_location = CHROMIUM
    try:
        driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    except Exception as e:                      # a broken browser install is not our failure
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(f"chromium did not start: {e}")
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
