"""The book's editions: a language switcher on every page, and Chinese search that knows the glossary.

The English book is the site's root; each translation is a copy of the site in a sub-folder named
after its language (zh_CN/, zh_TW/; tools/build_book.py builds them). `lstmkit_editions` in
_config.yml lists them as {language: name}, English first. Every page gets, in its header, links to
the same page in the other editions; the links are relative, so they work from the file system as
well as from a server.

For a Chinese edition the search index is segmented by jieba (Sphinx's zh search); the glossary's
Chinese terms (notation.md) are added to jieba's dictionary, so that 遗忘门 is one word of the index
instead of 遗忘 + 门 and a search for it finds the pages that use it.
"""

import re
from pathlib import Path

import zh_tw
from sphinx import addnodes

HERE = Path(__file__).resolve().parent
HTML_LANG = {"en": "en", "zh_CN": "zh-Hans", "zh_TW": "zh-Hant"}
LABEL = {"en": "Language", "zh_CN": "语言", "zh_TW": "語言"}


def _language(config):
    return config.language or "en"


def glossary_terms(notation_md):
    """[(english, [chinese, ...]), ...] from the {glossary} block of notation.md: each entry is an
    English term line followed by its Chinese term lines (the first is the one the book uses)."""
    text = Path(notation_md).read_text(encoding="utf-8")
    block = re.search(r"```\{glossary\}\n(.*?)\n```", text, re.S).group(1)
    entries = []
    for lines in re.split(r"\n\s*\n", block):
        terms = [ln for ln in lines.splitlines() if ln.strip() and not ln.startswith(" ")]
        if terms:
            entries.append((terms[0], terms[1:]))
    return entries


def _jieba_dict(app, config):
    """Write a jieba user dictionary of the glossary's Chinese terms for the search index."""
    lang = _language(config)
    if not lang.startswith("zh"):
        return
    words = [zh for _, zhs in glossary_terms(Path(app.srcdir) / "book" / "notation.md") for zh in zhs]
    if lang == "zh_TW":
        # the conversion tools/i18n.py applies to the zh_TW catalogs (e.g. 迴圈網路 -> 循環網路)
        traditional = zh_tw.converter(Path(app.srcdir) / "book" / "locales" / "zh_TW" / "phrases.tsv")
        words = [traditional(w) for w in words]
    path = Path(app.outdir).parent / "jieba_userdict.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{w} 100000 n\n" for w in dict.fromkeys(words)), encoding="utf-8")
    config.html_search_options = {**(config.html_search_options or {}), "dict": str(path)}


def _setup_theme(app, config):
    if str(HERE / "templates") not in config.templates_path:
        config.templates_path.append(str(HERE / "templates"))
    config.html_static_path.append(str(HERE / "static"))
    options = config.html_theme_options
    options.setdefault("article_header_end", ["lang-switch.html", "article-header-buttons.html"])
    _jieba_dict(app, config)


def _catalog(app, docname):
    """The compiled gettext catalog of `docname` in this edition's language (a null one for English)."""
    from sphinx.locale import init as init_locale
    from sphinx.util.i18n import docname_to_domain

    dirs = [str(Path(app.srcdir) / d) for d in app.config.locale_dirs]
    domain = docname_to_domain(docname, app.config.gettext_compact)
    return init_locale(dirs, app.config.language, domain)[0]


def _translate_captions(app, doctree):
    """Translate the part captions of the table of contents: sphinx-external-toc inserts its
    toctrees after Sphinx has translated the page, so their captions would stay English."""
    if _language(app.config) == "en":
        return
    catalog = _catalog(app, app.env.docname)
    for toctree in doctree.findall(addnodes.toctree):
        if toctree.get("caption"):
            toctree["caption"] = catalog.gettext(toctree["caption"])


def _links(app, pagename, templatename, context, doctree):
    """context["lang_switch"]: [(name, html lang, href or None for this edition), ...]; also the
    book's title (html_title, the root page's title) in this edition's language."""
    editions = app.config.lstmkit_editions
    current = _language(app.config)
    if current != "en" and context.get("docstitle"):
        title = context["docstitle"]
        translated = _catalog(app, app.config.root_doc).gettext(title)
        context["docstitle"] = translated
        context["titlesuffix"] = context.get("titlesuffix", "").replace(title, translated)
    up = "../" * pagename.count("/") + ("" if current == "en" else "../")
    links = []
    for lang, name in editions.items():
        folder = "" if lang == "en" else lang + "/"
        href = None if lang == current else f"{up}{folder}{pagename}.html"
        links.append((name, HTML_LANG.get(lang, lang.replace("_", "-")), href))
    context["lang_switch"] = links
    context["lang_switch_current"] = editions.get(current, current)
    context["lang_switch_label"] = LABEL.get(current, "Language")


def setup(app):
    app.add_config_value("lstmkit_editions", {"en": "English"}, "html")
    app.connect("config-inited", _setup_theme)
    app.connect("doctree-read", _translate_captions)
    app.connect("html-page-context", _links)
    app.add_css_file("lstmkit.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
