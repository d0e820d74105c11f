"""Translatable text in the chapters' outputs: figures' alt text and the animation's controls.

A figure's alt text comes from its cell's metadata (`mystnb: image: alt: ...`). MyST-NB puts every
output in the doctree at parse time, once per MIME type (a "mime bundle"), and a post-transform
keeps the one the builder prefers. Sphinx's Locale transform (read time) does translate the alt
text of those image nodes, but the gettext builder that writes the .pot files prefers text/plain:
the images were dropped before the messages were extracted, so the catalogs never had their alt
text. Here the gettext builder prefers the MIME types the HTML builder prefers, so the .pot files
hold exactly what the HTML pages show.

An HTML output (e.g. the animation of lstmkit.diagrams.animate_cell) is a raw node, which Sphinx
never translates. Its text a reader meets (alt, title and aria-label attributes, <label> text)
becomes translatable: the raw node is replaced by a TranslatableHTML node, whose messages the
gettext builder extracts and Locale replaces, attribute by attribute.
"""

import html
import re

from docutils import nodes
from sphinx import addnodes
from sphinx.transforms import SphinxTransform

# alt="text", title="text", aria-label="text" and <label ...>text</label>, outside <script> blocks
_TEXT = re.compile(r'(?P<script><script\b.*?</script>)'
                   r'|(?P<pre>\s(?:alt|title|aria-label)=")(?P<text>[^"]*)(?P<post>")'
                   r'|(?P<lpre><label\b[^>]*>)(?P<ltext>[^<]*)(?P<lpost></label>)', re.S | re.I)


def _parts(m):
    """(prefix, text as written, suffix) of a match of _TEXT; None for a <script> block."""
    if m.group("script"):
        return None
    return m.group("pre", "text", "post") if m.group("pre") else m.group("lpre", "ltext", "lpost")


def _texts(raw):
    """The translatable texts of an HTML string, unescaped, in order."""
    for m in _TEXT.finditer(raw):
        parts = _parts(m)
        if parts:
            yield html.unescape(parts[1]).strip()


class TranslatableHTML(nodes.raw, addnodes.translatable):
    """An HTML output whose visible or spoken text can be translated (HTML writers see a raw node)."""

    def _messages(self):
        seen = []
        for text in _texts(self.astext()):
            if re.search(r"[^\W\d_]", text) and text not in seen:  # has a letter
                seen.append(text)
        return seen

    def preserve_original_messages(self):
        self["original_messages"] = self._messages()

    def extract_original_messages(self):
        return self.get("original_messages") or self._messages()

    def apply_translated_message(self, original_message, translated_message):
        def swap(m):
            parts = _parts(m)
            if not parts or html.unescape(parts[1]).strip() != original_message:
                return m.group(0)
            return parts[0] + html.escape(translated_message, quote=True) + parts[2]

        translated = _TEXT.sub(swap, self.astext())
        self.clear()
        self.append(nodes.Text(translated))


class MarkHTMLOutputs(SphinxTransform):
    """Turn the chapters' HTML outputs with text in them into TranslatableHTML (before Locale)."""

    default_priority = 6  # before PreserveTranslatableMessages (10) and Locale (20)

    def apply(self):
        for raw in list(self.document.findall(nodes.raw)):
            if raw.get("format") != "html" or "text_html" not in raw["classes"]:
                continue  # only MyST-NB's text/html outputs
            if isinstance(raw, TranslatableHTML) or not any(_texts(raw.astext())):
                continue
            node = TranslatableHTML(raw.rawsource, raw.astext(), **raw.attributes)
            node.source, node.line = raw.source, raw.line
            raw.replace_self(node)


def _gettext_like_html(app, config):
    """The gettext builder selects, from each output's MIME bundle, what the HTML builder shows."""
    from myst_nb.core.render import get_mime_priority

    ranked = get_mime_priority("html", config.nb_mime_priority_overrides)
    config.nb_mime_priority_overrides = [
        *config.nb_mime_priority_overrides,
        *(("gettext", mime, rank) for rank, mime in enumerate(ranked, start=1)),
    ]


def setup(app):
    app.connect("config-inited", _gettext_like_html, priority=900)  # after myst_nb's own set-up
    app.add_transform(MarkHTMLOutputs)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
