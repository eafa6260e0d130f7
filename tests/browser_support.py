"""A real browser for the browser tests: the system's headless Chromium, driven by Selenium.

The browser and its driver are the ones the system package manager installed (Debian's
``chromium`` and ``chromium-driver``; ``scripts/bootstrap --test`` installs them). Nothing
here downloads a browser build: the driver's path is given, so Selenium Manager is never
asked for one, and ``SE_OFFLINE`` keeps it offline should anything call it.

Screenshots go to ``test-artifacts/screenshots/`` (``PIPELINE_TEST_ARTIFACTS`` moves the
folder), where CI keeps them as the run's artefacts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.environment import skip_or_fail

BROWSER_CANDIDATES = ("chromium", "chromium-browser")
DRIVER_CANDIDATES = ("chromedriver",)
ARTIFACTS = Path(os.environ.get("PIPELINE_TEST_ARTIFACTS", "test-artifacts"))
SCREENSHOTS = ARTIFACTS / "screenshots"
WAIT_SECONDS = 20.0

T = TypeVar("T")

# Selenium Manager reads this when called; the driver path given below means it never is.
os.environ.setdefault("SE_OFFLINE", "true")


def _first_on_path(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> tuple[str, str]:
    """The browser's and the driver's paths; without them skip, or fail in CI."""
    browser = os.environ.get("PIPELINE_CHROMIUM") or _first_on_path(BROWSER_CANDIDATES)
    driver = os.environ.get("PIPELINE_CHROMEDRIVER") or _first_on_path(DRIVER_CANDIDATES)
    if browser and driver:
        return browser, driver
    reason = "headless Chromium and chromedriver are not installed (scripts/bootstrap --test)"
    skip_or_fail(reason)


@contextmanager
def chromium(*, width: int = 1280, height: int = 900) -> Iterator[WebDriver]:
    """A fresh headless Chromium (its own profile, no cookies), quit on exit."""
    browser, driver_path = require_chromium()
    options = Options()
    options.binary_location = browser
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(
    driver: WebDriver, condition: Callable[[WebDriver], T], timeout: float = WAIT_SECONDS
) -> T:
    """What ``condition`` returns once it is truthy; fails the test after ``timeout``."""
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save the page as ``test-artifacts/screenshots/<name>.png`` and return the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if not driver.save_screenshot(str(path)):
        raise AssertionError(f"the browser could not save a screenshot to {path}")
    return path


def texts(driver: WebDriver, selector: str) -> list[str]:
    """The text of every element ``selector`` finds, read in one call (a live refresh may
    replace the elements between two WebDriver calls)."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector
    )
    return found


def click(driver: WebDriver, selector: str) -> None:
    """Click ``selector``, again if a live refresh replaced it meanwhile."""

    def clicked(d: WebDriver) -> bool:
        try:
            d.find_element(By.CSS_SELECTOR, selector).click()
        except StaleElementReferenceException:
            return False
        return True

    wait_for(driver, clicked)
