"""zh_CN -> zh_TW, one converter for the catalogs (tools/i18n.py), the theme's strings (theme_i18n)
and the search dictionary (lang_switch): OpenCC's s2twp (phrase level, Taiwan usage), then the
corrections in book/locales/zh_TW/phrases.tsv (one `wrong<TAB>right` per line, # for comments)."""

from pathlib import Path

PHRASES = Path(__file__).resolve().parent.parent / "locales" / "zh_TW" / "phrases.tsv"


def phrases(path=PHRASES):
    """[(wrong, right)] from phrases.tsv ([] when there is none)."""
    if not Path(path).exists():
        return []
    rows = (line.split("\t") for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [(row[0], row[1]) for row in rows if len(row) == 2 and not row[0].startswith("#")]


def converter(path=PHRASES):
    """The function that turns a zh_CN text into zh_TW."""
    import opencc

    convert = opencc.OpenCC("s2twp").convert
    fixes = phrases(path)

    def traditional(text):
        text = convert(text)
        for wrong, right in fixes:
            text = text.replace(wrong, right)
        return text

    return traditional
