"""Every figure a chapter draws opens at full size when clicked or tapped.

On a phone the content column is about 340 px wide, so a figure saved 1000 px wide is shown at a
third of its size: the numbers on the annotated LSTM cell, the legends and tick labels of side-by-
side plots come out 4-6 px tall. Each output image (a PNG or SVG that MyST-NB wrote to _images/) is
wrapped in a link to the image file itself, which the browser shows alone, at its own size, where
the reader can zoom and pan. The link has no text of its own: its accessible name is the image's
alt text (axe-core's link-name rule), so a screen reader announces the figure once, as a link.
Images already inside a link, and the animation's frames (no src, set by its script), are left as
they are.
"""

import re

# <img ... src="(../)*_images/NAME.png" ...>, not directly inside an <a ...>
_IMG = re.compile(r'(?P<img><img\b[^>]*?\ssrc="(?P<src>(?:\.\./)*_images/[^"]+\.(?:png|svg|jpe?g))"[^>]*>)',
                  re.I)
_OPEN_A = re.compile(r"<a\b[^>]*>\s*$", re.I)


def link_images(body):
    """`body` with each output image wrapped in <a class="figure-zoom" href="(its src)">."""
    out, last = [], 0
    for m in _IMG.finditer(body):
        before = body[last:m.start()]
        out.append(before)
        if _OPEN_A.search(body[max(0, m.start() - 300):m.start()]):
            out.append(m.group("img"))  # already a link
        else:
            out.append(f'<a class="figure-zoom" href="{m.group("src")}">{m.group("img")}</a>')
        last = m.end()
    out.append(body[last:])
    return "".join(out)


def _link_images(app, pagename, templatename, context, doctree):
    if "body" in context:
        context["body"] = link_images(context["body"])


def setup(app):
    app.connect("html-page-context", _link_images)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
