"""Offer every chapter as an executed Jupyter notebook (.ipynb) next to its HTML page.

MyST-NB writes the notebook of each MyST-markdown chapter to <outdir>/../jupyter_execute/
<docname>.ipynb. With `execute_notebooks: cache` that file has no outputs (MyST-NB writes the
notebook it read, not the one merged with the cached outputs), so after the build this extension
merges the outputs from the jupyter-cache, drops the jupytext header (it only matters for the .md
form), checks the result with nbformat.validate and writes it to <outdir>/<docname>.ipynb, so that
book/gates.html sits next to book/gates.ipynb.

Each such page also gets a visible link, placed right after its title:
"Download this chapter as a notebook (.ipynb)". The link is plain HTML (no JavaScript).
"""

from pathlib import Path

import nbformat
from sphinx.util import logging

logger = logging.getLogger(__name__)

LINK_TEXT = "Download this chapter as a notebook (.ipynb)"
LINK_TEXTS = {"zh_CN": "下载本章的 notebook（.ipynb）", "zh_TW": "下載本章的 notebook（.ipynb）"}


def _executed_path(app, docname):
    """Where MyST-NB wrote the executed notebook of `docname` (exists only for notebooks)."""
    return Path(app.outdir).parent / "jupyter_execute" / (docname + ".ipynb")


def _is_notebook(app, docname):
    """True if `docname` is a MyST notebook (its front matter names a kernel)."""
    return "kernelspec" in app.env.metadata.get(docname, {}) or _executed_path(app, docname).exists()


def _add_link(app, pagename, templatename, context, doctree):
    """Insert the download link after the page's first <h1> (or at the top of the body)."""
    if doctree is None or "body" not in context or not _is_notebook(app, pagename):
        return
    href = pagename.split("/")[-1] + ".ipynb"
    link = (
        f'<p class="nb-download"><a class="reference download" href="{href}" download>'
        f"{LINK_TEXTS.get(app.config.language, LINK_TEXT)}</a></p>\n"
    )
    body = context["body"]
    end = body.find("</h1>")
    context["body"] = body[: end + 5] + "\n" + link + body[end + 5:] if end >= 0 else link + body


def _has_outputs(nb):
    return any(c.cell_type == "code" and (c.outputs or c.execution_count) for c in nb.cells)


def _with_outputs(app, nb, docname):
    """Return `nb` with the outputs of its execution, taken from the jupyter-cache if needed."""
    has_code = any(c.cell_type == "code" for c in nb.cells)
    if not has_code or _has_outputs(nb):
        return nb
    from jupyter_cache import get_cache

    cache_path = app.env.mystnb_config.execution_cache_path
    try:
        _, nb = get_cache(cache_path).merge_match_into_notebook(nb)
    except KeyError:
        logger.warning(f"no executed version of {docname} in the jupyter-cache {cache_path}; "
                       "its .ipynb download has no outputs")
    return nb


def _write_notebooks(app, exception):
    """Copy each executed notebook next to its HTML page, as a validated plain .ipynb."""
    if exception is not None or app.builder.format != "html":
        return
    for docname in sorted(app.env.found_docs):
        src = _executed_path(app, docname)
        if not src.exists():
            continue
        nb = _with_outputs(app, nbformat.read(src, as_version=4), docname)
        nb.metadata.pop("jupytext", None)
        nb.metadata.pop("source_map", None)
        nbformat.validate(nb)
        dst = Path(app.outdir) / (docname + ".ipynb")
        dst.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dst)


def setup(app):
    app.connect("html-page-context", _add_link)
    app.connect("build-finished", _write_notebooks)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
