"""Site-wide accessibility fixes of the theme's HTML, found by axe-core in the browser tests.

- Two theme components are overridden (book/_ext/templates/): the search button, whose accessible
  name did not contain its visible text, and the colour-mode button, whose icons' titles did not
  match its label.
- MyST-NB's folded cells: `<summary aria-label="Toggle hidden content">` around the visible text
  "Show code cell source", so the accessible name does not contain the visible text (axe-core:
  label-content-name-mismatch, serious); the summary is named by its text instead.
- The bibliography: docutils writes `<div role="list" class="citation-list">` whose entries have
  role="doc-biblioentry", which ARIA 1.2 deprecated and which is no listitem, so a screen reader
  meets a list without items (axe-core: aria-required-children, critical). The entries become
  role="listitem".
"""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _templates(app, config):
    if str(TEMPLATES) not in config.templates_path:
        config.templates_path.insert(0, str(TEMPLATES))


def _fix_body(app, pagename, templatename, context, doctree):
    if "body" in context:
        body = context["body"].replace('role="doc-biblioentry"', 'role="listitem"')
        context["body"] = body.replace('<summary aria-label="Toggle hidden content">', "<summary>")


def setup(app):
    app.connect("config-inited", _templates)
    app.connect("html-page-context", _fix_body)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
