"""The translations' gettext catalogs (book/locales/<language>/LC_MESSAGES/<docname>.po).

    python tools/i18n.py update [--add book/gates ...]   # English changed: refresh the catalogs
    python tools/i18n.py zh-tw                            # regenerate zh_TW from zh_CN (OpenCC s2twp)
    python tools/i18n.py stat                             # translated / fuzzy / untranslated per catalog

`update` extracts the English messages (Sphinx's gettext builder, into _build/gettext/*.pot; the
chapters' outputs come from the jupyter-cache of the last `make book`, and the figures' alt text and
the text of HTML outputs are messages too: book/_ext/i18n_outputs.py) and merges them into the
zh_CN catalogs with sphinx-intl: a changed paragraph becomes a fuzzy message (old translation kept
as a hint), a new one an empty message. Only pages that already have a catalog are updated; `--add`
starts the catalog of a page not translated yet. Then it regenerates zh_TW (`zh-tw`).

zh_TW is never edited by hand: it is converted from zh_CN by OpenCC's phrase-level s2twp
configuration (Taiwan vocabulary, e.g. 软件 -> 軟體), then the corrections in
book/locales/zh_TW/phrases.tsv (one `wrong<TAB>right` per line) are applied, so a reviewer's fix
survives every regeneration.
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
import build_book  # noqa: E402
import zh_tw  # noqa: E402

REPO = build_book.REPO
LOCALES = REPO / "book" / "locales"
SOURCE_LANG = "zh_CN"
PHRASES = LOCALES / "zh_TW" / "phrases.tsv"


def catalogs(lang):
    """{docname: path of its .po} for every catalog of `lang`."""
    base = LOCALES / lang / "LC_MESSAGES"
    return {p.relative_to(base).with_suffix("").as_posix(): p for p in sorted(base.rglob("*.po"))}


def extract(root=REPO):
    """Write the English messages of every page to <root>/_build/gettext/<docname>.pot."""
    build_dir = Path(root) / "_build"
    code = build_book._sphinx(
        build_dir / "gettext",
        {"nb_execution_cache_path": str(build_dir / ".jupyter_cache"), "gettext_location": False},
        builder="gettext", doctreedir=build_dir / ".doctrees-gettext",
    )
    if code != 0:
        raise SystemExit("the gettext build failed (see the log above)")
    return build_dir / "gettext"


def update(add=(), root=REPO):
    from sphinx_intl import basic

    pot_dir = extract(root)
    wanted = set(catalogs(SOURCE_LANG)) | {doc.removesuffix(".md") for doc in add}
    missing = [doc for doc in wanted if not (pot_dir / f"{doc}.pot").exists()]
    if missing:
        raise SystemExit(f"no such page in the book: {missing} (give docnames like book/gates)")
    with tempfile.TemporaryDirectory() as tmp:
        for doc in wanted:
            dst = Path(tmp) / f"{doc}.pot"
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(pot_dir / f"{doc}.pot", dst)
        basic.update(str(LOCALES), tmp, (SOURCE_LANG,), jobs=1)
    to_traditional()


def traditional_converter():
    """The function that turns a zh_CN translation into zh_TW: OpenCC s2twp, then phrases.tsv."""
    return zh_tw.converter(PHRASES)


def to_traditional(locales=LOCALES):
    """Write <locales>/zh_TW/... from book/locales/zh_CN/... (OpenCC s2twp + phrases.tsv)."""
    from babel.messages.pofile import read_po, write_po

    traditional = traditional_converter()
    for doc, src in catalogs(SOURCE_LANG).items():
        with open(src, "rb") as f:
            catalog = read_po(f, locale="zh_CN")
        catalog.locale = "zh_TW"
        catalog.language_team = "zh_TW (generated from zh_CN by tools/i18n.py: edit zh_CN)"
        for message in catalog:
            if message.id and message.string:
                message.string = traditional(message.string)
        dst = Path(locales) / "zh_TW" / "LC_MESSAGES" / f"{doc}.po"
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(dst, "wb") as f:
            write_po(f, catalog, width=76)
        print(f"zh_TW: {dst}")


def statistics(path):
    """(translated, fuzzy, untranslated) messages of one .po file."""
    from babel.messages.pofile import read_po

    with open(path, "rb") as f:
        catalog = read_po(f)
    messages = [m for m in catalog if m.id]
    fuzzy = sum(1 for m in messages if m.fuzzy)
    untranslated = sum(1 for m in messages if not m.fuzzy and not m.string)
    return len(messages) - fuzzy - untranslated, fuzzy, untranslated


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("update", help="refresh the zh_CN catalogs from the English text, then zh_TW")
    up.add_argument("--add", action="append", default=[], help="start the catalog of this page")
    up.add_argument("--root", default=str(REPO), help="the folder whose _build/ has the jupyter-cache")
    sub.add_parser("zh-tw", help="regenerate the zh_TW catalogs from zh_CN")
    sub.add_parser("stat", help="translated / fuzzy / untranslated messages per catalog")
    args = parser.parse_args(argv)
    if args.command == "update":
        update(args.add, Path(args.root))
    elif args.command == "zh-tw":
        to_traditional()
    else:
        for lang in ("zh_CN", "zh_TW"):
            for doc, path in catalogs(lang).items():
                t, f, u = statistics(path)
                print(f"{lang}/{doc}: {t} translated, {f} fuzzy, {u} untranslated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
