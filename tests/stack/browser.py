"""Debian's Chromium driven through WebDriver (Debian's chromium-driver), as a person uses the Airflow UI.

``make test`` installs both packages when they are missing; selenium talks to the chromedriver
on disk (never one it would download).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


class Browser:
    """A headless Chromium with an empty profile of its own, closed on leaving the ``with`` block."""

    def __init__(self, workdir: Path, width: int = 1400, height: int = 1600) -> None:
        chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
        assert chromium and chromedriver, "`make test` installs Debian's chromium and chromium-driver"
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--window-size={width},{height}",
                     f"--user-data-dir={workdir / 'chromium-profile'}"):
            options.add_argument(flag)
        self.driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        self.driver.set_page_load_timeout(60)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.driver.quit()

    def get(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return self.driver.current_url

    @property
    def title(self) -> str:
        return self.driver.title

    @property
    def page_source(self) -> str:
        return self.driver.page_source

    def wait_for(self, what: str, check, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = check()
            except WebDriverException:
                found = None
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f}s (at {self.url})")
            time.sleep(0.3)

    def log_in(self, base_url: str, username: str, password: str) -> None:
        """Through Airflow's own login page, as a person does: the form, then the UI's home page."""
        self.get(f"{base_url}/auth/login")
        user = self.wait_for("the login form", lambda: self.driver.find_element(By.NAME, "username"))
        user.send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        self.wait_for("the UI after logging in", lambda: "/auth/login" not in self.url)

    def log_out(self, base_url: str) -> None:
        """Airflow's logout route, which the UI's user menu opens: it ends the session and its cookie."""
        self.get(f"{base_url}/api/v2/auth/logout")
        self.wait_for("logged out", lambda: "_token" not in {c["name"] for c in self.driver.get_cookies()})

    def link_href(self, text: str, timeout: float = 30) -> str:
        """The address of the link (or link button) showing ``text``, once the page has rendered it."""
        def find():
            for element in self.driver.find_elements(By.TAG_NAME, "a"):
                if element.text.strip() == text and element.get_attribute("href"):
                    return element.get_attribute("href")
            return None

        return self.wait_for(f"a link {text!r}", find, timeout)

    def click(self, text: str, timeout: float = 30) -> None:
        """Click the (visible) element showing exactly ``text``: a tab, a button, a link."""
        def find():
            for element in self.driver.find_elements(By.XPATH, f"//*[normalize-space(text())={_xpath_literal(text)}]"):
                if element.is_displayed():
                    return element
            return None

        self.wait_for(f"something showing {text!r}", find, timeout).click()

    def open_link(self, text: str, timeout: float = 30) -> str:
        """Click the link showing ``text`` and follow it, into a new tab if it opens one (the UI opens an
        extra link to another site in a new tab, one to its own host in the same); return its address."""
        href = self.link_href(text, timeout)
        before = set(self.driver.window_handles)
        self.click(text, timeout)

        def arrived():
            new = set(self.driver.window_handles) - before
            if new:
                self.driver.switch_to.window(new.pop())
            return self.url.startswith(href.split("#")[0])

        self.wait_for("the linked page", arrived, timeout)
        return href

    def screenshot(self, path: Path) -> Path:
        self.driver.save_screenshot(str(path))
        return path


def _xpath_literal(text: str) -> str:
    return f"'{text}'" if "'" not in text else f'"{text}"'
