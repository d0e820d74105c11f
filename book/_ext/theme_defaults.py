"""Small theme settings that Jupyter Book's _config.yml cannot express without replacing its
whole html_theme_options or html_context.

- default_mode (an html_context value): the light/dark switch of pydata-sphinx-theme starts from
  it; when it is empty (Jupyter Book's default) the theme logs a console error on every page.
"""


def _defaults(app, config):
    config.html_context.setdefault("default_mode", "auto")


def setup(app):
    app.connect("config-inited", _defaults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
