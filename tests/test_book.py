"""The book: a strict build from scratch, then every page of every edition opened in a real Chromium.

The build runs once per session into a fresh temporary folder, with tools/build_book.py, the script
`make book` runs: English with warnings as errors (-W), nitpicky references (-n) and a failing cell
failing the build, then the translations (_build/html/zh_CN, _build/html/zh_TW) from the same
jupyter-cache. The browser tests serve the built site on 127.0.0.1 and visit each page once (one
browser for the session): MathJax rendered, every image loaded and has alt text, nothing logged as
an error, no request left the local server, axe-core (npm, tools/package.json) finds no serious or
critical accessibility violation, and at a 390 px wide viewport (a phone) the page does not scroll
sideways (a screenshot of each is kept in the session's temporary folder). Chromium is Debian's
(/usr/bin/chromium) and axe-core comes from `npm ci --prefix tools`, both installed by
tools/install-browser.sh; if either is missing the browser tests fail, they do not skip.
"""

import functools
import http.server
import os
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
DOWNLOAD_TEXT = "Download this chapter as a notebook (.ipynb)"
AXE = REPO / "tools" / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


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
    """Build the book strictly into a fresh folder (or into $LSTMKIT_BOOK_ROOT, reusing the build
    there: a cached rebuild while working on the book); return the folder of the HTML site."""
    out = Path(os.environ.get("LSTMKIT_BOOK_ROOT") or tmp_path_factory.mktemp("book"))
    cmd = [sys.executable, str(REPO / "tools" / "build_book.py"), str(out)]
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


def editions():
    """{language: name} of the book's editions, English first (_config.yml's lstmkit_editions)."""
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    return config["sphinx"]["config"]["lstmkit_editions"]


def edition_of(rel):
    """('zh_CN', 'book/gates.html') for 'zh_CN/book/gates.html'; ('en', rel) for an English page."""
    first, _, rest = rel.partition("/")
    return (first, rest) if first in editions() and first != "en" else ("en", rel)


def html_pages(site):
    """Paths (relative to the site) of every HTML page of every edition, not counting theme
    templates in _static/."""
    rels = (p.relative_to(site) for p in site.rglob("*.html"))
    return sorted(r.as_posix() for r in rels if "_static" not in r.parts)


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


def test_no_page_shows_what_a_chapter_printed_to_stderr(site):
    # A warning, a font fallback or a progress bar on stderr lands in the page as a grey block.
    block = re.compile(r'class="output stderr[^"]*"><div class="highlight"><pre><span></span>(.{0,99})', re.S)
    shown = [(rel, m.group(1)) for rel in html_pages(site)
             for m in block.finditer((site / rel).read_text(encoding="utf-8"))]
    assert shown == [], "stderr output in the pages:\n" + "\n".join(f"{r}: {t!r}" for r, t in shown[:10])


def test_every_figure_opens_at_full_size(site):
    # book/_ext/figure_links.py: on a phone a figure is shown at a third of its size, so each image
    # a chapter drew is a link to the image file itself; the link's name is the image's alt text.
    img = re.compile(r'<img\b[^>]*\bsrc="((?:\.\./)*_images/[^"]+)"[^>]*>')
    unlinked, broken, figures = [], [], 0
    for rel in html_pages(site):
        text = (site / rel).read_text(encoding="utf-8")
        for m in img.finditer(text):
            figures += 1
            before = text[max(0, m.start() - 300):m.start()]
            link = re.search(r'<a class="figure-zoom" href="([^"]+)">\s*$', before)
            if not link or link.group(1) != m.group(1):
                unlinked.append(f"{rel}: {m.group(1)}")
            elif not (site / rel).parent.joinpath(link.group(1)).resolve().is_file():
                broken.append(f"{rel}: {link.group(1)}")
    assert figures > 50, f"only {figures} figure images in the whole site"
    assert unlinked == [], "figures that do not open at full size:\n" + "\n".join(unlinked[:10])
    assert broken == [], "figure links to missing files:\n" + "\n".join(broken[:10])


def _translated_docs(lang):
    """Docnames that have a catalog in `lang` (book/locales/<lang>/LC_MESSAGES/<docname>.po)."""
    base = REPO / "book" / "locales" / lang / "LC_MESSAGES"
    return sorted(p.relative_to(base).with_suffix("").as_posix() for p in base.rglob("*.po"))


def test_translations_change_the_prose_but_not_the_code_or_its_output(site):
    pre = re.compile(r"<pre>(.*?)</pre>", re.S)
    h1 = re.compile(r"<h1>(.*?)<a", re.S)
    for lang in editions():
        if lang == "en":
            continue
        docs = _translated_docs(lang)
        assert "book/index" in docs, f"{lang} has no catalog of the index page"
        for doc in docs:
            english = (site / f"{doc}.html").read_text(encoding="utf-8")
            chinese = (site / lang / f"{doc}.html").read_text(encoding="utf-8")
            assert f'<html lang="{lang.replace("_", "-")}"' in chinese
            title = h1.search(chinese).group(1)
            assert title != h1.search(english).group(1), f"{lang}/{doc}: title left in English"
            assert pre.findall(english), f"{doc}: no code cell to compare"
            assert pre.findall(chinese) == pre.findall(english), f"{lang}/{doc}: code or outputs differ"


# ----------------------------------------------------------------------------- in the browser

def _record_failed_response(errors, response):
    if response.status >= 400:
        errors.append(f"HTTP {response.status} {response.url}")


# Images without alt text: none, or only the image's file name, which is what Sphinx and MyST-NB
# write when no alt is given (decorative images say so with alt="" and role="presentation").
_NO_ALT = """() => Array.from(document.images).filter(img => {
    if (img.getAttribute('role') === 'presentation') return false;
    const alt = (img.getAttribute('alt') || '').trim();
    return !alt || /^\\S+\\.(png|svg|jpe?g|gif|webp)$/i.test(alt);
}).map(img => img.getAttribute('src'))"""

# The alt text of every image.
_ALTS = "() => Array.from(document.images).map(img => img.getAttribute('alt') || '')"

# Text around the figures a reader sees or hears: titles (tooltips), aria-labels and labels in the
# chapters' outputs (the animation's controls) and in figures (the caption's permalink).
_FIGURE_TEXTS = """() => Array.from(document.querySelectorAll(
    ['.cell_output', 'figure'].map(box => `${box} [title], ${box} [aria-label], ${box} label`)
        .join(', '))).map(el =>
    el.tagName === 'LABEL' ? el.textContent.trim()
        : (el.getAttribute('title') || el.getAttribute('aria-label')).trim()).filter(t => t)"""

# What the theme and its extensions say outside the chapter's own text: the tooltips, labels and
# placeholders of every element (the header's buttons, the landmarks a screen reader announces, the
# search box, the copy buttons' and fold buttons' hints, set by JavaScript after load), and every
# text outside the article (sidebars, footer, skip link), not counting code (also inline, as in a
# heading in the page's table of contents), outputs (their text is
# checked above), formulas, keyboard keys and the language switcher (it names each language in it).
_UI_TEXTS = """() => {
    // (Bootstrap moves a tooltip's title to data-bs-original-title)
    const attrs = ['title', 'data-bs-original-title', 'aria-label', 'data-bs-title', 'placeholder',
                   'data-tooltip', 'data-toggle-hint'];
    const code = 'pre, code, .cell_output, mjx-container, kbd, .lang-switch';
    const texts = [];
    for (const el of document.querySelectorAll('*')) {
        if (el.closest(code)) continue;
        for (const a of attrs) {
            // a cross-reference's tooltip is the text it points to (e.g. a paper's title)
            if (a.endsWith('title') && el.matches('article a.reference')) continue;
            const value = (el.getAttribute(a) || '').trim();
            if (value) texts.push(value);
        }
    }
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const outside = 'article.bd-article, script, style, noscript, ' + code;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        const text = node.textContent.trim();
        if (text && !node.parentElement.closest(outside)) texts.push(text);
    }
    // the copy button's icon names it (an SVG <title>)
    for (const t of document.querySelectorAll('button.copybtn title')) texts.push(t.textContent.trim());
    return texts;
}"""

# Loaded images that did not decode.
_BROKEN = """async () => {
    const imgs = Array.from(document.images);
    await Promise.all(imgs.map(img => img.decode().catch(() => null)));
    return imgs.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.src);
}"""

# axe-core's violations of impact serious or critical, as readable lines.
_AXE = """async () => {
    const result = await axe.run(document, {resultTypes: ['violations']});
    return result.violations.filter(v => ['serious', 'critical'].includes(v.impact)).map(v =>
        `${v.impact} ${v.id}: ${v.help} (${v.helpUrl.split('?')[0]})\\n    on ` +
        v.nodes.slice(0, 5).map(n => n.target.join(' ')).join('\\n    on '));
}"""

# How far the page scrolls sideways, and the visible elements that stick out of the viewport
# without being inside a box that scrolls (or clips) horizontally on purpose: wide formulas and code
# may scroll inside their own box, the page itself must not scroll sideways.
_OVERFLOW = """() => {
    const width = document.documentElement.clientWidth;
    // inside a box that scrolls or clips sideways, or in a fixed layer (an off-canvas drawer),
    // which does not make the page scroll
    const clipped = el => {
        if (getComputedStyle(el).position === 'fixed') return true;
        for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
            const style = getComputedStyle(p);
            const x = style.overflowX;
            if (x === 'auto' || x === 'scroll' || x === 'hidden' || x === 'clip') return true;
            if (style.position === 'fixed') return true;
        }
        return false;
    };
    const describe = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (
        el.className && typeof el.className === 'string'
            ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
    const wide = [];
    for (const el of document.body.querySelectorAll('*')) {
        const r = el.getBoundingClientRect();
        if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
        if (r.right > width + 1 && !clipped(el)) {
            wide.push(`${describe(el)} (right edge ${Math.round(r.right)} px)`);
        }
        if (wide.length >= 5) break;
    }
    return {width, scrollWidth: document.documentElement.scrollWidth, wide};
}"""


def _visit(page, site, server, rel, shots):
    """Open one page and collect what the tests check about it."""
    host = urlparse(server).netloc
    requests, errors = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", functools.partial(_record_failed_response, errors))
    page.set_viewport_size(DESKTOP)
    response = page.goto(server + rel, wait_until="load")
    report = {"status": response.status if response else None}
    page.wait_for_load_state("networkidle")

    source = (site / rel).read_text(encoding="utf-8")
    report["math"] = None
    if re.search(r'class="math[ "]', source):
        page.wait_for_selector("mjx-container", state="attached", timeout=20_000)
        report["math"] = page.locator("mjx-container").count()
    report["broken"] = page.evaluate(_BROKEN)
    report["no_alt"] = page.evaluate(_NO_ALT)
    report["alts"] = page.evaluate(_ALTS)
    report["figure_texts"] = page.evaluate(_FIGURE_TEXTS)
    report["ui_texts"] = page.evaluate(_UI_TEXTS)
    # the page shown, after a redirect (the site's index.html forwards to book/index.html)
    report["shown"] = urlparse(page.url).path.removeprefix(urlparse(server).path)
    report["switcher"] = page.eval_on_selector_all(
        ".lang-switch a", "links => links.map(a => [a.getAttribute('hreflang'), a.href])")
    page.add_script_tag(path=str(AXE))
    report["axe"] = page.evaluate(_AXE)

    page.set_viewport_size(PHONE)
    page.wait_for_timeout(100)  # let MathJax and the theme react to the resize
    report["overflow"] = page.evaluate(_OVERFLOW)
    shot = shots / (rel.replace("/", "__").removesuffix(".html") + "-390px.png")
    page.screenshot(path=str(shot))  # the first screen, as a phone shows it
    report["screenshot"] = shot

    report["errors"] = errors
    foreign = [u for u in requests if urlparse(u).scheme not in ("http", "data", "blob")]
    foreign += [u for u in requests if urlparse(u).scheme == "http" and urlparse(u).netloc != host]
    report["foreign"] = foreign
    return report


@pytest.fixture(scope="session")
def visits(site, server, browser, tmp_path_factory):
    """{page: report} for every page of every edition, each opened once in one browser context."""
    if not AXE.exists():
        pytest.fail(f"axe-core not found at {AXE}: run `bash tools/install-browser.sh`")
    shots = tmp_path_factory.mktemp("screenshots")
    context = browser.new_context(viewport=DESKTOP)
    reports = {}
    for rel in html_pages(site):
        page = context.new_page()
        reports[rel] = _visit(page, site, server, rel, shots)
        page.close()
    context.close()
    return reports


def test_every_page_renders_in_chromium(site, visits):
    assert len(visits) >= len(toc_docnames()) * len(editions())
    for rel, report in visits.items():
        assert report["status"] == 200, f"{rel}: HTTP {report['status']}"
        if report["math"] is not None:
            assert report["math"] > 0, f"{rel}: MathJax did not render"
        assert report["broken"] == [], f"{rel}: images that did not load: {report['broken']}"
        assert report["errors"] == [], f"{rel}: console errors: {report['errors']}"
        assert report["foreign"] == [], f"{rel}: requests outside the local site: {report['foreign']}"


def test_every_translated_page_typesets_its_math(site, visits):
    for lang in editions():
        if lang == "en":
            continue
        for doc in toc_docnames():
            rel = f"{lang}/{doc}.html"
            english = visits[f"{doc}.html"]["math"]
            assert rel in visits, f"{rel} missing from the build"
            # a translation may repeat a symbol ("$h_t$ ... $h_t$") but must not drop a formula
            assert visits[rel]["math"] >= english, (
                f"{rel}: {visits[rel]['math']} typeset formulas, the English page has {english}")


def test_axe_finds_no_serious_accessibility_violation(visits):
    found = {rel: report["axe"] for rel, report in visits.items() if report["axe"]}
    assert not found, "axe-core (serious/critical):\n" + "\n".join(
        f"{rel}:\n  " + "\n  ".join(lines) for rel, lines in found.items())


def test_every_image_has_alt_text(visits):
    missing = {rel: report["no_alt"] for rel, report in visits.items() if report["no_alt"]}
    assert not missing, "images without alt text:\n" + "\n".join(
        f"{rel}: {srcs}" for rel, srcs in missing.items())


_CJK = re.compile(r"[\u4e00-\u9fff]")


def test_translated_pages_describe_their_figures_in_chinese(visits):
    """Every image of a Chinese page has Chinese alt text (the figures' alt text from the cells'
    metadata and the animation's frames), and the text around them (the animation's controls, the
    captions' permalinks) is Chinese; the English page has the same images with English alt text."""
    bad = []
    for rel, report in visits.items():
        lang, english_rel = edition_of(rel)
        if lang == "en":
            bad += [f"{rel}: Chinese alt text: {a[:50]}" for a in report["alts"] if _CJK.search(a)]
            continue
        assert len(report["alts"]) == len(visits[english_rel]["alts"]), f"{rel}: other images"
        bad += [f"{rel}: English alt text: {a[:70]}" for a in report["alts"] if not _CJK.search(a)]
        bad += [f"{rel}: English text in a figure or output: {t[:70]}"
                for t in report["figure_texts"] if re.search("[A-Za-z]", t) and not _CJK.search(t)]
    assert not bad, "\n".join(bad)
    assert sum(len(visits[f"zh_CN/{doc}.html"]["alts"]) for doc in toc_docnames()) >= 40
    # what was checked: the animation's controls and the captions' permalinks, English and Chinese
    assert {"Pause", "Once", "Link to this image"} <= set(visits["book/gates.html"]["figure_texts"])
    assert {"暂停", "播放一次", "链接到此图片"} <= set(visits["zh_CN/book/gates.html"]["figure_texts"])


def test_translated_pages_speak_their_language_in_the_theme(visits):
    """The theme's buttons, tooltips, landmark labels, search box, footer and the copy and fold
    hints are Chinese on every page of a Chinese edition (book/_ext/theme_i18n.py), in the
    edition's script; the English pages show the English strings the check looks for."""
    english_only = re.compile(r"^(?=.*[A-Za-z])[^\u4e00-\u9fff]*$")
    file_type = re.compile(r"^\.[a-z]+$")  # the download menu's items: .md, .pdf
    bad = []
    for rel, report in visits.items():
        lang, _ = edition_of(rel)
        if lang == "en":
            continue
        bad += [f"{rel}: {t[:70]!r}" for t in dict.fromkeys(report["ui_texts"])
                if english_only.match(t) and not file_type.match(t)]
        if lang == "zh_TW":  # Simplified forms the themes' catalogs gave the zh_TW edition
            bad += [f"{rel}: Simplified {t!r}" for t in report["ui_texts"]
                    if re.search("[顶页导内当载书录]", t)]
    assert not bad, "English (or Simplified) theme text in a Chinese edition:\n" + "\n".join(bad)
    # what was checked, on an English page and its translations
    english = set(visits["book/gates.html"]["ui_texts"])
    assert {"Toggle primary sidebar", "Search this book...", "Main", "Page", "Color mode",
            "Print to PDF", "Copy", "Copy to clipboard", "By the lstmkit authors",
            "© Copyright 2026."} <= english
    assert {"显示或隐藏全书目录", "在本书中搜索…", "全书目录", "颜色模式", "打印为 PDF", "复制",
            "复制到剪贴板"} <= set(visits["zh_CN/book/gates.html"]["ui_texts"])
    assert {"顯示或隱藏全書目錄", "在本書中搜尋…", "全書目錄", "列印為 PDF", "複製",
            "複製到剪貼簿"} <= set(visits["zh_TW/book/gates.html"]["ui_texts"])


def test_no_page_scrolls_sideways_on_a_phone(visits):
    bad = {}
    for rel, report in visits.items():
        assert report["screenshot"].stat().st_size > 0, f"{rel}: no 390 px screenshot"
        o = report["overflow"]
        if o["scrollWidth"] > o["width"] or o["wide"]:
            bad[rel] = f"scrollWidth {o['scrollWidth']} > {o['width']} px; sticking out: {o['wide']}"
    assert not bad, f"pages wider than a {PHONE['width']} px viewport:\n" + "\n".join(
        f"{rel}: {why} (screenshot {visits[rel]['screenshot']})" for rel, why in bad.items())


def test_switcher_leads_to_the_same_page_in_every_other_edition(site, server, visits):
    langs = list(editions())
    html_lang = {"en": "en", "zh_CN": "zh-Hans", "zh_TW": "zh-Hant"}
    for rel, report in visits.items():
        lang, inner = edition_of(report["shown"])
        targets = {}
        for code, href in report["switcher"]:
            path = urlparse(href).path.removeprefix(urlparse(server).path)
            targets[code] = path
        expected = {html_lang[other]: inner if other == "en" else f"{other}/{inner}"
                    for other in langs if other != lang}
        assert targets == expected, f"{rel}: switcher links {targets}, expected {expected}"
        for path in targets.values():
            assert (site / path).is_file(), f"{rel}: switcher link to {path}, which does not exist"


def test_chinese_search_finds_a_chapter_by_a_chinese_word(server, browser):
    page = browser.new_page()
    for lang, word in (("zh_CN", "遗忘门"), ("zh_TW", "遺忘門")):
        page.goto(f"{server}{lang}/search.html?q={word}", wait_until="load")
        # hits are listed one by one as their pages are fetched; the summary is written at the end
        page.wait_for_function("() => document.querySelector('.search-summary')?.textContent",
                               timeout=30_000)
        hits = page.eval_on_selector_all("ul.search li a", "links => links.map(a => a.href)")
        paths = {urlparse(h).path.removeprefix(urlparse(server).path).split("#")[0] for h in hits}
        assert f"{lang}/book/notation.html" in paths, f"{lang}: search for {word} found {sorted(paths)}"
        # what the search script writes (Sphinx's translations.js) is in the edition's language
        said = page.eval_on_selector_all("#search-results h2, .search-summary",
                                         "els => els.map(e => e.textContent.trim())")
        assert len(said) == 2 and all(_CJK.search(t) for t in said), f"{lang}: search page says {said}"
    page.close()


def test_search_snippets_show_formulas_as_text(server, browser):
    """Snippets are cut from each hit's HTML, where math is TeX source until MathJax runs;
    book/_ext/search_text.py turns it into text and drops the print-only contents box."""
    page = browser.new_page()
    page.goto(f"{server}search.html?q=forget", wait_until="load")
    page.wait_for_function("() => document.querySelector('.search-summary')?.textContent",
                           timeout=30_000)   # written when every hit is listed
    snippets = page.eval_on_selector_all("ul.search li p.context", "ps => ps.map(p => p.textContent)")
    page.close()
    raw = [s for s in snippets if re.search(r"\\[(\[)\]]|\\[a-z]+|\$\$", s)]
    assert not raw, f"TeX source in search snippets: {raw[:3]}"
    assert not [s for s in snippets if re.search(r"\bContents\b", s)], snippets[:3]
    assert any("⊙" in s or "σ" in s for s in snippets), f"no formula shown as text: {snippets[:3]}"


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
