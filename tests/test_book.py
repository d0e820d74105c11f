"""The book: a strict build from scratch, then every page opened in a real (headless) Chromium.

The build runs once per session (it executes every chapter) into a fresh temporary folder, with
warnings as errors (-W), nitpicky references (-n) and a failing cell failing the build. The
browser tests serve the built site on 127.0.0.1 and check, page by page, that MathJax rendered,
that every image loaded, that nothing was logged as an error, and that no request left the local
server. Chromium is Debian's (/usr/bin/chromium, installed by tools/install-browser.sh); if it is
missing the browser tests fail, they do not skip.
"""

import functools
import http.server
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlparse

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
DOWNLOAD_TEXT = "Download this chapter as a notebook (.ipynb)"
# Runs Jupyter Book's command line with this interpreter (the package has no __main__ module).
JB = [sys.executable, "-c", "import sys; from jupyter_book.cli.main import main; sys.exit(main())"]


def toc_docnames():
    """Every document of _toc.yml in reading order, e.g. ['book/index', 'book/rnn', ...]."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    names = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(entry["file"].removesuffix(".md"))
            walk(entry.get("sections"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return names


# ----------------------------------------------------------------------------- build and serve

@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """Build the book strictly into a fresh folder; return the folder of the HTML site."""
    out = tmp_path_factory.mktemp("book")
    cmd = [*JB, "build", str(REPO), "--path-output", str(out), "-W", "-n", "--keep-going"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    log = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr)  # without terminal colours
    assert proc.returncode == 0, f"strict book build failed (exit {proc.returncode}):\n{log[-6000:]}"
    assert "build succeeded" in log, log[-3000:]
    return out / "_build" / "html"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def server(site):
    """Serve the built site on a free port of 127.0.0.1; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright. Fails (never skips) if it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `bash tools/install-browser.sh`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


def html_pages(site):
    """Paths (relative to the site) of every HTML page, not counting theme templates in _static/."""
    rels = (p.relative_to(site) for p in site.rglob("*.html"))
    return sorted(r.as_posix() for r in rels if r.parts[0] != "_static")


# ----------------------------------------------------------------------------- the build

def test_build_has_every_toc_page(site):
    for doc in toc_docnames():
        assert (site / f"{doc}.html").is_file(), f"{doc}.html missing from the build"


def test_mathjax_is_served_locally(site):
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file()
    page = (site / "book" / "index.html").read_text()
    assert re.search(r'<script[^>]+src="[./]*_static/mathjax/tex-chtml\.js', page)


def test_no_page_loads_from_another_host(site):
    # src= and <link href=> are what a page loads; plain <a href> links to papers are fine.
    tags = "script|img|link|iframe|source|audio|video|embed|object"
    loaded = re.compile(rf'<(?:{tags})\b[^>]*?\b(?:src|href|data)="(https?:)?//', re.I)
    for rel in html_pages(site):
        text = (site / rel).read_text(encoding="utf-8")
        m = loaded.search(text)
        assert m is None, f"{rel} loads from another host: {text[m.start():m.start() + 200]}"
        assert "unpkg.com" not in text and "cdn.jsdelivr" not in text, f"{rel} mentions a CDN"


# ----------------------------------------------------------------------------- in the browser

def _record_failed_response(errors, response):
    if response.status >= 400:
        errors.append(f"HTTP {response.status} {response.url}")


def test_every_page_renders_in_chromium(site, server, browser):
    host = urlparse(server).netloc
    pages = html_pages(site)
    assert len(pages) >= len(toc_docnames())
    for rel in pages:
        page = browser.new_page()
        requests, errors = [], []
        page.on("request", lambda r, requests=requests: requests.append(r.url))
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
        page.on("response", functools.partial(_record_failed_response, errors))
        response = page.goto(server + rel, wait_until="load")
        assert response is not None and response.ok, f"{rel}: HTTP {response and response.status}"
        page.wait_for_load_state("networkidle")

        source = (site / rel).read_text(encoding="utf-8")
        if re.search(r'class="math[ "]', source):
            page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
            assert page.locator("mjx-container").count() > 0, f"{rel}: MathJax did not render"

        broken = page.evaluate(
            """async () => {
                const imgs = Array.from(document.images);
                await Promise.all(imgs.map(img => img.decode().catch(() => null)));
                return imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src);
            }"""
        )
        assert broken == [], f"{rel}: images that did not load: {broken}"
        assert errors == [], f"{rel}: console errors: {errors}"
        foreign = [u for u in requests if urlparse(u).scheme not in ("http", "data", "blob")]
        foreign += [u for u in requests if urlparse(u).scheme == "http" and urlparse(u).netloc != host]
        assert foreign == [], f"{rel}: requests outside the local site: {foreign}"
        page.close()


def test_sidebar_links_to_every_chapter(server, browser):
    page = browser.new_page()
    page.goto(server + "book/index.html", wait_until="load")
    hrefs = page.eval_on_selector_all("nav.bd-docs-nav a", "links => links.map(a => a.href)")
    page.close()
    targets = {urlparse(h).path.lstrip("/") for h in hrefs}
    for doc in toc_docnames()[1:]:
        assert f"{doc}.html" in targets, f"sidebar has no link to {doc}"
    for href in hrefs:
        with urllib.request.urlopen(href.split("#")[0]) as r:
            assert r.status == 200, f"{href}: HTTP {r.status}"


def test_every_chapter_offers_its_executed_notebook(site, server):
    for doc in toc_docnames():
        html = (site / f"{doc}.html").read_text(encoding="utf-8")
        m = re.search(r'<a [^>]*href="([^"]+\.ipynb)"[^>]*>' + re.escape(DOWNLOAD_TEXT), html)
        assert m, f"{doc}.html has no '{DOWNLOAD_TEXT}' link"
        url = urljoin(server + f"{doc}.html", m.group(1))
        with urllib.request.urlopen(url) as r:
            nb = nbformat.reads(r.read().decode("utf-8"), as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code, f"{url}: no code cells"
        assert any(c.outputs for c in code), f"{url}: not executed (no outputs)"
        assert "jupytext" not in nb.metadata
