"""Build every edition of the book, strictly: `python tools/build_book.py [OUTPUT_ROOT]`.

English goes to <root>/_build/html/, each translation of `lstmkit_editions` (_config.yml) to
<root>/_build/html/<language>/. The English build executes the chapters (Jupyter Book, with the
jupyter-cache in <root>/_build/.jupyter_cache); the translations are Sphinx builds of the same
sources with `language` set, reading the same cache, so every notebook is executed once, not once
per edition. Each translation is built in <root>/_build/i18n/<language>/ (its own doctrees and
jupyter_execute folder) and its HTML copied into the English site.

`make book` and the tests (tests/test_book.py) both call `build`, so the tests check exactly what
`make book` publishes. The root defaults to the repository (so _build/ sits next to _toc.yml).
"""

import argparse
import shutil
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def editions():
    """{language: name} of every edition, English first (from _config.yml)."""
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    return config["sphinx"]["config"]["lstmkit_editions"]


def _sphinx(outdir, overrides, builder="html", doctreedir=None):
    """One strict Sphinx build of the book with Jupyter Book's configuration; returns its exit code."""
    from jupyter_book.sphinx import build_sphinx
    from sphinx import locale

    locale.translators.clear()  # Sphinx caches catalogs per process: another language's would leak in
    confoverrides = {
        "external_toc_path": str(REPO / "_toc.yml"),
        "latex_individualpages": False,
        "nitpicky": True,
        **overrides,
    }
    result = build_sphinx(
        REPO, outdir, noconfig=True, path_config=str(REPO / "_config.yml"),
        confoverrides=confoverrides, builder=builder, doctreedir=doctreedir, warningiserror=True,
        keep_going=True,
    )
    return result if isinstance(result, int) else 1


def build(root=REPO, languages=None, log=print):
    """Build English and the translations into <root>/_build; returns {edition: seconds}.
    Raises RuntimeError naming the edition whose build failed."""
    build_dir = Path(root) / "_build"
    html = build_dir / "html"
    cache = build_dir / ".jupyter_cache"
    languages = [lang for lang in editions() if lang != "en"] if languages is None else languages
    seconds = {}

    start = time.perf_counter()
    if _sphinx(html, {"nb_execution_cache_path": str(cache)}) != 0:
        raise RuntimeError("the English build failed (see the log above)")
    seconds["en"] = time.perf_counter() - start

    for lang in languages:
        start = time.perf_counter()
        out = build_dir / "i18n" / lang / "html"
        overrides = {"language": lang, "nb_execution_cache_path": str(cache)}
        if _sphinx(out, overrides) != 0:
            raise RuntimeError(f"the {lang} build failed (see the log above)")
        shutil.rmtree(html / lang, ignore_errors=True)
        shutil.copytree(out, html / lang)
        seconds[lang] = time.perf_counter() - start
    log("built " + ", ".join(f"{lang} in {s:.0f} s" for lang, s in seconds.items()))
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(REPO), help="the folder that gets _build/")
    parser.add_argument("--language", action="append", help="build only these translations")
    args = parser.parse_args(argv)
    try:
        build(args.root, args.language)
    except RuntimeError as error:
        print(f"build_book: {error}", file=sys.stderr)
        return 1
    print(f"The book is in {Path(args.root) / '_build' / 'html'}: open index.html there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
