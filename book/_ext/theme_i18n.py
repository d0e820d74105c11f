"""The theme's own words in the translated editions: buttons, tooltips, landmarks, search box, footer.

pydata-sphinx-theme and sphinx-book-theme label their buttons and landmarks in three ways, none of
which the book's catalogs (locale_dirs) reach or get right for zh_CN and zh_TW:
- through Sphinx's gettext catalog, `_("Color mode")`, where Sphinx's and the themes' catalogs lack
  many of the strings, and pydata-sphinx-theme's one "zh" catalog gives zh_TW Simplified ones
  (回到顶部, 网页导航);
- through sphinx-book-theme's own catalog, `translate("Print to PDF")`, which only the theme's
  folder is searched for (its zh_CN entry is in Traditional Chinese: 列印成 PDF);
- hard-coded in the templates (title="Toggle primary sidebar", aria-label="Main") or in theme
  options Jupyter Book sets (search_bar_text "Search this book...").

One table, book/_ext/theme_strings.tsv (English, zh_CN, optional zh_TW; an empty zh_TW cell is
zh_CN converted by OpenCC s2twp and book/locales/zh_TW/phrases.tsv, as tools/i18n.py converts the
catalogs), translates all three: its translations are put in front of the two gettext catalogs, so
`_()` and `translate()` find them first, and when the build has finished the attributes a reader
sees or a screen reader reads (title, aria-label, data-bs-title, placeholder) outside the article
text are replaced where their whole value is an English string of the table.

The same table also gives the author's name in the footer (`author` in the page
context), sphinx-togglebutton's hints ("Click to show", its `togglebutton_hint*` options), and
sphinx-copybutton's tooltips ("Copy", "Copied!"). copybutton picks them by <html lang> from a
JavaScript table that has zh-CN but no zh-TW entry and no option to change it; a script after
copybutton.js adds this edition's entry to that table and selects it (`messages`, `locale` and
the icons' markup are top-level globals of copybutton 0.5's script; if they are renamed the
script does nothing and the browser test of the tooltips fails). sphinx-togglebutton writes its
buttons' aria-label ("Toggle hidden content") from its script with no option; a listener that runs
after it relabels them.
"""

import gettext
import html
import json
import re
from pathlib import Path

import zh_tw
from sphinx import locale

HERE = Path(__file__).resolve().parent
TABLE = HERE / "theme_strings.tsv"
PHRASES = HERE.parent / "locales" / "zh_TW" / "phrases.tsv"
LANGUAGES = ("zh_CN", "zh_TW")

# title="...", aria-label="...", data-bs-title="...", placeholder="..." (Jinja escapes " in values)
_ATTRIBUTE = re.compile(r'(\s(?:title|aria-label|data-bs-title|placeholder)=")([^"]*)(")')
# the article's own text (translated by the catalogs) and code, which this pass leaves alone
_KEEP = re.compile(r'<article class="bd-article".*?</article>|<pre\b.*?</pre>|<script\b.*?</script>',
                   re.S)


def _traditional():
    """zh_CN -> zh_TW as tools/i18n.py converts the catalogs."""
    return zh_tw.converter(PHRASES)


def strings(language, table=TABLE):
    """{English: translation} of the theme's strings for `language` ({} for English)."""
    if language not in LANGUAGES:
        return {}
    rows = []
    for line in Path(table).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            cells = line.split("\t")
            if len(cells) < 2 or not cells[0] or not cells[1]:
                raise ValueError(f"{table}: a row needs English<TAB>zh_CN[<TAB>zh_TW]: {line!r}")
            rows.append(cells + [""])
    if language == "zh_CN":
        return {english: zh_cn for english, zh_cn, *_ in rows}
    traditional = _traditional()
    return {english: zh_tw or traditional(zh_cn) for english, zh_cn, zh_tw, *_ in rows}


class TableFirst(gettext.NullTranslations):
    """A gettext catalog that answers from `table` first and asks `fallback` for anything else."""

    def __init__(self, table, fallback):
        super().__init__()
        self._table = table
        self.add_fallback(fallback)

    def gettext(self, message):
        return self._table.get(message) or super().gettext(message)


# sphinx-copybutton's messages for this edition (after copybutton.js, before the page has loaded)
_COPYBUTTON = """(() => {
  if (typeof messages !== "object" || typeof locale !== "string") return;
  const lang = document.documentElement.lang, own = %s;
  const old = messages[locale];
  messages[lang] = own;
  locale = lang;
  const retitle = (svg, key) => svg.replace(`<title>${old[key]}</title>`, `<title>${own[key]}</title>`);
  iconCopy = retitle(iconCopy, "copy_to_clipboard");
  iconCheck = retitle(iconCheck, "copy_success");
})();"""
# Labels other scripts write into the page (sphinx-togglebutton's buttons: aria-label="Toggle hidden
# content"), relabelled once they are there (this listener runs after theirs)
_RELABEL = """document.addEventListener("DOMContentLoaded", () => {
  const table = %s;
  for (const el of document.querySelectorAll("[aria-label], [title]")) {
    if (el.closest("pre, .cell_output")) continue;
    for (const name of ["aria-label", "title"]) {
      const text = el.getAttribute(name);
      if (text && Object.hasOwn(table, text)) el.setAttribute(name, table[text]);
    }
  }
});"""
_SCRIPT_LABELS = ["Toggle hidden content"]
_COPYBUTTON_KEYS = {"copy": "Copy", "copy_to_clipboard": "Copy to clipboard",
                    "copy_success": "Copied!", "copy_failure": "Failed to copy"}


def _install(app, config):
    """Put the table in front of Sphinx's catalog (templates' `_()`) and the book theme's; set
    sphinx-togglebutton's hints and sphinx-copybutton's messages from it."""
    table = strings(config.language)
    app.lstmkit_theme_strings = config.lstmkit_theme_strings = table  # a changed table rewrites the pages
    if not table:
        return
    config.togglebutton_hint = table["Click to show"]
    config.togglebutton_hint_hide = table["Click to hide"]
    own = {key: table[english] for key, english in _COPYBUTTON_KEYS.items()}
    app.add_js_file(None, body=_COPYBUTTON % json.dumps(own, ensure_ascii=False), priority=501)
    labels = {english: table[english] for english in _SCRIPT_LABELS}
    app.add_js_file(None, body=_RELABEL % json.dumps(labels, ensure_ascii=False), priority=501)
    app.translator = TableFirst(table, app.translator)  # Jinja's _() (installed at builder init)
    locale.translators["general", "sphinx"] = app.translator
    booktheme = locale.translators.get(("general", "booktheme"), gettext.NullTranslations())
    locale.translators["general", "booktheme"] = TableFirst(table, booktheme)


def _author(app, pagename, templatename, context, doctree):
    """The footer's "By <author>" (sphinx-book-theme's author.html) in this edition's language."""
    table = app.lstmkit_theme_strings
    if context.get("author") in table:
        context["author"] = table[context["author"]]


def localize(page, table):
    """`page` (HTML) with every title/aria-label/data-bs-title/placeholder outside the article
    text and code whose whole value is an English string of `table` translated."""
    if not table:
        return page

    def attribute(m):
        text = html.unescape(m.group(2))
        if text not in table:
            return m.group(0)
        return m.group(1) + html.escape(table[text], quote=True) + m.group(3)

    out, start = [], 0
    for keep in _KEEP.finditer(page):
        out.append(_ATTRIBUTE.sub(attribute, page[start:keep.start()]))
        out.append(keep.group(0))
        start = keep.end()
    out.append(_ATTRIBUTE.sub(attribute, page[start:]))
    return "".join(out)


def _localize_pages(app, exception):
    table = getattr(app, "lstmkit_theme_strings", None)
    if exception is not None or app.builder.format != "html" or not table:
        return
    outdir = Path(app.outdir)
    for path in outdir.rglob("*.html"):
        if "_static" in path.relative_to(outdir).parts:
            continue
        page = path.read_text(encoding="utf-8")
        localized = localize(page, table)
        if localized != page:
            path.write_text(localized, encoding="utf-8")


def setup(app):
    app.add_config_value("lstmkit_theme_strings", {}, "html")  # set from the table, not by hand
    app.connect("config-inited", _install, priority=400)  # before sphinx-togglebutton reads its hints
    app.connect("html-page-context", _author, priority=600)  # after sphinx-book-theme sets it
    app.connect("build-finished", _localize_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
