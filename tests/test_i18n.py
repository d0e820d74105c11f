"""The translations' gettext catalogs (book/locales): complete, in step with each other, and using
the glossary's terms. The built Chinese editions are checked in the browser by tests/test_book.py."""

import re
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "book" / "_ext"))
import i18n  # noqa: E402
from lang_switch import glossary_terms  # noqa: E402

CATALOGS = [(lang, doc) for lang in ("zh_CN", "zh_TW") for doc in i18n.catalogs(lang)]


def read(lang, doc):
    with open(i18n.catalogs(lang)[doc], "rb") as f:
        return [m for m in read_po(f) if m.id]


def test_there_are_chinese_catalogs():
    docs = set(i18n.catalogs("zh_CN"))
    assert {"book/index", "book/notation"} <= docs, docs
    assert set(i18n.catalogs("zh_TW")) == docs, "every zh_CN catalog needs its zh_TW conversion"


@pytest.mark.parametrize(("lang", "doc"), CATALOGS, ids=[f"{lang}/{doc}" for lang, doc in CATALOGS])
def test_catalog_has_no_untranslated_or_fuzzy_message(lang, doc):
    translated, fuzzy, untranslated = i18n.statistics(i18n.catalogs(lang)[doc])
    assert translated > 0
    bad = [m.id for m in read(lang, doc) if m.fuzzy or not m.string]
    assert (fuzzy, untranslated) == (0, 0), (
        f"{lang}/{doc}: {fuzzy} fuzzy, {untranslated} untranslated messages, e.g. {bad[:3]}")


def test_zh_tw_is_the_opencc_conversion_of_zh_cn(tmp_path):
    i18n.to_traditional(tmp_path)
    for doc, path in i18n.catalogs("zh_TW").items():
        with open(path, "rb") as f:
            checked_in = {m.id: m.string for m in read_po(f) if m.id}
        with open(tmp_path / "zh_TW" / "LC_MESSAGES" / f"{doc}.po", "rb") as f:
            generated = {m.id: m.string for m in read_po(f) if m.id}
        stale = [k for k in generated if checked_in.get(k) != generated[k]]
        assert not stale, f"zh_TW/{doc} is stale (run `python tools/i18n.py zh-tw`): {stale[:3]}"


def test_conversion_is_phrase_level_with_taiwan_usage():
    convert = i18n.traditional_converter()
    assert convert("遗忘门控制细胞状态") == "遺忘門控制細胞狀態"
    assert convert("软件的内存") == "軟體的記憶體"  # Taiwan words, not character-by-character 軟件/內存


def _english(term):
    """A regex for an English term and its plural, as a whole word (an acronym in capitals only)."""
    return re.compile(r"\b" + re.escape(term) + r"(s|es)?\b", 0 if term.isupper() else re.I)


@pytest.mark.parametrize("lang", ["zh_CN", "zh_TW"])
def test_glossary_terms_are_used_consistently(lang):
    convert = i18n.traditional_converter() if lang == "zh_TW" else (lambda s: s)
    entries = [(en, convert(zhs[0])) for en, zhs in glossary_terms(REPO / "book" / "notation.md")]
    assert len(entries) >= 15 and ("forget gate", convert("遗忘门")) in entries
    # longer terms first: "forget gate" is checked as such, then "gate" on what is left
    entries.sort(key=lambda e: -len(e[0]))
    wrong = []
    for doc in i18n.catalogs(lang):
        for m in read(lang, doc):
            if m.id in {en for en, _ in entries}:
                continue  # the glossary's own English term lines stay English
            if m.id.startswith("\n") and m.string == m.id:
                continue  # display math ($$...$$) stays as in English: see test_display_math_is_verbatim
            # code and formulas are not prose: `lstm` there is a variable, not the term
            english, chinese = re.sub(r"`[^`]*`|\$[^$]*\$", " ", m.id), m.string
            for en, zh in entries:
                if not _english(en).search(english):
                    continue
                acronym = en.isupper() and en in chinese  # LSTM may stay LSTM
                if zh not in chinese and not acronym:
                    wrong.append(f"{doc}: '{en}' is not translated as {zh} in: {chinese[:80]}")
                english = _english(en).sub(" ", english)
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(("lang", "doc"), CATALOGS, ids=[f"{lang}/{doc}" for lang, doc in CATALOGS])
def test_display_math_is_verbatim(lang, doc):
    """Sphinx turns a translated math block into reST `::` + an indented block, which MyST renders
    as a paragraph "::" instead of the equation: a display-math message must keep the English."""
    changed = [m.id[:60] for m in read(lang, doc) if m.id.startswith("\n") and m.string != m.id]
    assert not changed, f"{lang}/{doc}: display math changed in translation: {changed[:3]}"


# ----------------------------------------------------------------------------- figures' alt text

CJK = re.compile(r"[\u4e00-\u9fff]")


def _figure_alts(doc):
    """The alt texts a chapter's cells give their image outputs (`mystnb: image: alt:`). A cell
    that shows HTML (the animation) has no image output: its alt text is in the HTML it prints,
    which the browser tests of tests/test_book.py check in the built pages."""
    from myst_nb.core.read import read_myst_markdown_notebook

    nb = read_myst_markdown_notebook((REPO / f"{doc}.md").read_text(encoding="utf-8"))
    alts = []
    for cell in nb.cells:
        alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt")
        if alt and not re.search(r"^HTML\(", cell.source, re.M):
            alts.append(alt)
    return alts


def test_the_chapters_have_figures_with_alt_text():
    alts = {doc: _figure_alts(doc) for doc in i18n.catalogs("zh_CN")}
    assert sum(len(a) for a in alts.values()) >= 40, alts
    assert "Diagram of the LSTM cell" in " ".join(alts["book/gates"])


@pytest.mark.parametrize(("lang", "doc"), CATALOGS, ids=[f"{lang}/{doc}" for lang, doc in CATALOGS])
def test_every_figure_alt_text_is_translated(lang, doc):
    """The figures' alt text is in the page's catalog (tools/i18n.py update puts it there) and
    translated: a screen reader reads the Chinese page's figures in Chinese."""
    messages = {m.id: m for m in read(lang, doc)}
    bad = []
    for alt in _figure_alts(doc):
        m = messages.get(alt)
        if m is None or m.fuzzy or not CJK.search(m.string or ""):
            bad.append(f"{alt[:70]}... ({'not in the catalog' if m is None else 'untranslated'})")
    assert not bad, f"{lang}/{doc}: alt text without a Chinese translation:\n" + "\n".join(bad)


def test_html_output_text_is_extracted_and_replaced():
    """An HTML output's alt, title, aria-label and <label> text are its messages; a translation
    replaces each where it occurs, escaped, and leaves the rest of the HTML as it was."""
    from i18n_outputs import TranslatableHTML

    source = ('<img alt="The cell at step &lt;1&gt;" id="_anim_img1" src="data:x">'
              '<button title="Pause" aria-label="Pause" onclick="a.pause()">||</button>'
              '<input type="range" aria-label="Step"><label for="r1">Once</label><label> 3 </label>'
              '<script>var title="x";</script>')
    node = TranslatableHTML("", source, format="html", classes=["output", "text_html"])
    node.preserve_original_messages()
    assert node.extract_original_messages() == ["The cell at step <1>", "Pause", "Step", "Once"]
    node.apply_translated_message("Pause", "暂停")
    node.apply_translated_message("The cell at step <1>", "第 <1> 步的细胞")
    html = node.astext()
    assert 'title="暂停" aria-label="暂停"' in html
    assert '<img alt="第 &lt;1&gt; 步的细胞" id="_anim_img1" src="data:x">' in html
    assert html.endswith('<label for="r1">Once</label><label> 3 </label><script>var title="x";</script>')
    # the messages stay the English ones (the gettext builder extracts them after translation)
    assert node.extract_original_messages()[:2] == ["The cell at step <1>", "Pause"]


def test_sphinx_messages_missing_from_its_zh_cn_catalog_are_translated():
    """book/_ext/locales/zh_CN/LC_MESSAGES/sphinx.po fills gaps in Sphinx's own zh_CN catalog (the
    permalinks' titles, e.g. next to a figure's caption): each of its messages is one Sphinx has,
    untranslated there and translated here."""
    import sphinx

    ours = REPO / "book" / "_ext" / "locales" / "zh_CN" / "LC_MESSAGES" / "sphinx.po"
    with open(ours, "rb") as f:
        messages = [m for m in read_po(f) if m.id]
    with open(Path(sphinx.__file__).parent / "locale" / "zh_CN" / "LC_MESSAGES" / "sphinx.po", "rb") as f:
        upstream = {m.id: m.string for m in read_po(f) if m.id}
    assert "Link to this image" in {m.id for m in messages}
    for m in messages:
        assert m.id in upstream, f"Sphinx has no message {m.id!r} (any more)"
        assert not upstream[m.id], f"Sphinx translates {m.id!r} itself now: drop it here"
        assert CJK.search(m.string) and not m.fuzzy, m.id


def _tiny_project(root):
    """A one-page Sphinx project with MyST-NB and book/_ext/i18n_outputs.py: a stored notebook (not
    executed) with an image output whose alt text comes from the cell's metadata and an HTML output
    with an <img alt> and a button title."""
    import base64
    import struct
    import zlib

    import nbformat

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(b"\x00\xff\x00\x00")) + chunk(b"IEND", b"")
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}})
    image = {"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A page\n\nSome text."),
        nbformat.v4.new_code_cell("square()", metadata={"mystnb": {"image": {"alt": "A red square"}}},
                                  outputs=[nbformat.v4.new_output("display_data", data=image)]),
        nbformat.v4.new_code_cell("frames()", outputs=[nbformat.v4.new_output("display_data", data={
            "text/html": '<img alt="One frame" src="data:,"><button title="Pause">||</button>',
            "text/plain": "<HTML>"})]),
    ]
    (root / "src").mkdir()
    nbformat.write(nb, root / "src" / "page.ipynb")
    (root / "src" / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(REPO / 'book' / '_ext')!r})\n"
        "extensions = ['myst_nb', 'i18n_outputs']\nnb_execution_mode = 'off'\n"
        "locale_dirs = ['locales']\ngettext_compact = False\nroot_doc = 'page'\n", encoding="utf-8")
    return root / "src"


def _sphinx(src, out, *args):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-W", *args, str(src), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alt_text_and_html_output_text_go_through_the_catalogs(tmp_path):
    """The gettext builder extracts a figure's alt text and an HTML output's texts (it would keep
    only text/plain outputs without book/_ext/i18n_outputs.py); a translated build applies them."""
    src = _tiny_project(tmp_path)
    _sphinx(src, tmp_path / "gettext", "-b", "gettext")
    pot = (tmp_path / "gettext" / "page.pot").read_text(encoding="utf-8")
    for message in ("A page", "A red square", "One frame", "Pause"):
        assert f'msgid "{message}"' in pot, pot

    po = src / "locales" / "zh_CN" / "LC_MESSAGES" / "page.po"
    po.parent.mkdir(parents=True)
    po.write_text('msgid ""\nmsgstr "Content-Type: text/plain; charset=UTF-8\\n"\n\n' + "".join(
        f'msgid "{en}"\nmsgstr "{zh}"\n\n' for en, zh in
        [("A page", "一页"), ("A red square", "红色方块"), ("One frame", "一帧"), ("Pause", "暂停")]),
        encoding="utf-8")
    _sphinx(src, tmp_path / "zh", "-b", "html", "-D", "language=zh_CN")
    _sphinx(src, tmp_path / "en", "-b", "html")
    zh = (tmp_path / "zh" / "page.html").read_text(encoding="utf-8")
    en = (tmp_path / "en" / "page.html").read_text(encoding="utf-8")
    assert 'alt="红色方块"' in zh and 'alt="一帧"' in zh and 'title="暂停"' in zh, zh
    assert 'alt="A red square"' in en and 'alt="One frame"' in en and 'title="Pause"' in en
