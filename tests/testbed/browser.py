"""Playwright (sync API, from PyPI) driving Debian's Chromium: never `playwright install`, which downloads
browsers; executable_path=/usr/bin/chromium makes it unnecessary."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ._proc import Server, TestbedError, subdir

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright

CHROMIUM = "/usr/bin/chromium"     # a shell wrapper on Debian; that works
# Without the background-networking flags Chromium keeps trying to reach Google's hosts, which this machine's
# closed network refuses. Never --user-data-dir= here: Playwright refuses it (launch() makes a temporary profile).
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


class ChromiumBrowser(Server):
    """A Playwright Browser on Debian's Chromium. browser: the playwright Browser; new_context() /
    new_page() give a fresh context that ignores HTTPS errors (Chromium does not trust the test CA).

    The sync API ties these objects to the thread that started them; Playwright's driver leaves
    playwright-artifacts-* directories in $TMPDIR, so it is started with TMPDIR=WORKDIR/browser.
    """

    name = "browser"

    def __init__(self, workdir: Path, executable: str | None = None, headless: bool = True) -> None:
        self.dir = Path(workdir) / "browser"
        self.executable = executable or os.environ.get("CHROMIUM", CHROMIUM)
        self.headless = headless
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    @property
    def browser(self) -> Browser:
        if self._browser is None:
            raise RuntimeError("browser not started")
        return self._browser

    @property
    def running(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    def start(self) -> Self:
        if self.running:
            return self
        if not shutil.which(self.executable):
            raise TestbedError(f"no {self.executable}: run scripts/install-system.sh")
        from playwright.sync_api import sync_playwright

        tmp = subdir(self.dir.parent, self.dir.name)
        old = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = str(tmp)       # read once, when the driver starts
        try:
            self._playwright = sync_playwright().start()
        finally:
            if old is None:
                del os.environ["TMPDIR"]
            else:
                os.environ["TMPDIR"] = old
        try:
            self._browser = self._playwright.chromium.launch(executable_path=self.executable,
                                                             headless=self.headless, args=ARGS)
        except BaseException:
            self._playwright.stop()
            self._playwright = None
            raise
        return self

    def stop(self) -> None:
        if self._browser is not None:
            try:
                self._browser.close()
            finally:
                self._browser = None
        if self._playwright is not None:
            self._playwright.stop()
            self._playwright = None

    def new_context(self, **kwargs: Any) -> BrowserContext:
        kwargs.setdefault("ignore_https_errors", True)
        kwargs.setdefault("viewport", {"width": 1024, "height": 768})
        return self.browser.new_context(**kwargs)

    def new_page(self, **kwargs: Any) -> Page:
        """A page in a context of its own; close it with page.context.close()."""
        return self.new_context(**kwargs).new_page()
