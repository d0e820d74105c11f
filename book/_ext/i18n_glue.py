"""Glue values in translated pages.

Sphinx translates a paragraph by parsing its msgstr as a new, separate docutils document
(sphinx.transforms.i18n.Locale). myst-nb's glue roles look the values up on the document being
parsed (`document["nb_renderer"]`), which that new document lacks, so every {glue:text}`key` in a
translation failed with "No key ... found in glue data". myst-nb drops the renderer from the page
at the end of parsing, so we keep the one it created last (the page's); a transform that runs
before Locale makes it the current page's renderer, and the glue look-up of a translated
fragment falls back to it.

The nodes of a translated fragment that remember their document (a citation's pending_xref) keep
pointing to that separate document, whose settings hold the whole build environment; pickled with
the page, they made every translated doctree ~3 MB (63 MB an edition, English 5.5 MB) and a cached
rebuild slow (it unpickles every doctree to number the figures). After reading, they point to the
page.
"""

from myst_nb import sphinx_
from myst_nb.ext.glue import directives, roles, utils
from sphinx.transforms import SphinxTransform

_original = utils.retrieve_glue_data
_original_load_renderer = sphinx_.load_renderer
_last = {}


def load_renderer(name):
    cls = _original_load_renderer(name)

    def create(*args, **kwargs):
        _last["renderer"] = renderer = cls(*args, **kwargs)
        return renderer

    return create


def retrieve_glue_data(document, key):
    if "nb_renderer" in document or _last.get("page") is None:
        return _original(document, key)
    document["nb_renderer"] = _last["page"]
    try:
        return _original(document, key)
    finally:
        del document["nb_renderer"]  # as myst-nb does: the doctree must stay picklable


class KeepNotebookRenderer(SphinxTransform):
    """Stash the page's notebook renderer where the translated fragments can reach it."""

    default_priority = 5  # before sphinx.transforms.i18n.Locale (20)

    def apply(self):
        _last["page"] = _last.pop("renderer", None)


def _own_document(app, doctree):
    """Nodes that Locale parsed in a fragment document belong to the page (see above)."""
    for node in doctree.findall():
        if node._document is not None and node._document is not doctree:
            node._document = None  # the document is then the parent's, the page


def setup(app):
    app.connect("doctree-read", _own_document)
    for module in (utils, roles, directives):
        module.retrieve_glue_data = retrieve_glue_data
    sphinx_.load_renderer = load_renderer
    app.add_transform(KeepNotebookRenderer)
    # env_version 2: doctrees pickled before _own_document are read again
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 2}
