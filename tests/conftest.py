"""Shared fixtures."""

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright; one for the whole run (Playwright's sync API
    cannot be started again while it runs). Fails (never skips) if Chromium is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `bash tools/install-browser.sh`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page_width(browser):
    """page_width(html_path, width) -> (document.scrollWidth, body text) of a local page at a
    viewport `width` CSS pixels wide."""
    def measure(html_path, width):
        page = browser.new_page(viewport={"width": width, "height": 800})
        try:
            page.goto(Path(html_path).resolve().as_uri())
            return page.evaluate("document.documentElement.scrollWidth"), page.inner_text("body")
        finally:
            page.close()

    return measure


@pytest.fixture(scope="module")
def one_thread():
    """One torch intra-op thread: tiny tensors avoid OpenMP spin-wait stalls on a busy machine, and the
    applied chapters train single-threaded, so the same thread count reproduces their runs."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
