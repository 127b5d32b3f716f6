"""A real browser for the web side's journeys: Debian's chromium, driven by Selenium
through Debian's chromium-driver (both installed by `.ci/run` / `make deps-system`;
nothing is downloaded at run time). Every page a journey visits is saved as a PNG
under SCREENSHOTS (test-artifacts/screenshots/, or $MAILBOT_SCREENSHOTS)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("MAILBOT_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))


class Browser:
    """A headless Chromium with the few verbs the journeys need."""

    def __init__(self, base: str, name: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100",
                    "--lang=fr-FR", "--disable-gpu"):
            opts.add_argument(arg)
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(30)
        self.base = base
        self.name = name
        self.shots = 0

    def go(self, path: str) -> None:
        self.driver.get(path if path.startswith("http") else self.base + path)

    def fill(self, field_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        el = self.driver.find_element(By.ID, field_id)
        el.clear()
        el.send_keys(value)

    def set_value(self, field_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.execute_script("arguments[0].value = arguments[1]",
                                   self.driver.find_element(By.ID, field_id), value)

    def choose(self, field_id: str, value: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select

        Select(self.driver.find_element(By.ID, field_id)).select_by_value(value)

    def attach(self, field_id: str, path: Path) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.ID, field_id).send_keys(str(path))

    def press(self, css: str) -> None:
        """Click, and wait for the page the click leads to (a form post): the old page's root
        is gone. ChromeDriver says so either as a stale element or, when the old document is
        torn down while it looks, as "Node with given id does not belong to the document"."""
        from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.driver.find_element(By.TAG_NAME, "html")
        self.driver.find_element(By.CSS_SELECTOR, css).click()

        def gone(_driver: object) -> bool:
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc):
                    return True
                raise
            return False

        WebDriverWait(self.driver, 20).until(gone)

    def text(self, css: str = "main") -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def links(self) -> dict[str, str]:
        from selenium.webdriver.common.by import By

        return {a.text: a.get_attribute("href") for a in self.driver.find_elements(By.TAG_NAME, "a")}

    @property
    def url(self) -> str:
        return self.driver.current_url

    def shot(self, label: str) -> Path:
        """Save the page as `<journey>-NN-<label>.png` (a full-page capture)."""
        self.shots += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{self.name}-{self.shots:02d}-{re.sub(r'[^a-z0-9-]+', '-', label.lower())}.png"
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        self.driver.set_window_size(1280, max(800, min(int(height) + 40, 6000)))
        assert self.driver.save_screenshot(str(path)), f"no screenshot saved at {path}"
        self.driver.set_window_size(1280, 1100)
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
        return path

    def close(self) -> None:
        self.driver.quit()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def browser_available() -> None:
    """Fail (never skip quietly in CI) when the system browser or its driver is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing or shutil.which("chromedriver") is None and not Path(CHROMEDRIVER).exists():
        pytest.skip(f"missing {missing} (Debian: apt-get install chromium chromium-driver; make deps-system)")


def open_browser(base: str, name: str) -> Iterator[Browser]:
    browser_available()
    b = Browser(base, name)
    try:
        yield b
    finally:
        b.close()
