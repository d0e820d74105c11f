"""Serve MathJax 3 from the built site instead of a CDN.

The MathJax files come from the `django-static-mathjax` wheel (import name `mathjax`); they are copied
to <outdir>/_static/mathjax/ when the build has finished, so Jupyter Book does not turn each of its
.js files into a script tag (it does that for files in the source _static/ folder).

MathJax's textmacros package is loaded (from the same local copy): without it, text inside \\text{}
is shown as typed, so `\\text{num\\_layers}` came out as "num\\_layers" with its backslash.

A display formula wider than the column (a phone's is about 340 px) is set smaller until it fits,
down to 3/4 of MathJax's size; what is still too wide scrolls inside its own box, with a shadow on
the side that hides more (book/_ext/static/lstmkit.css). Formulas that fit keep their size.
"""

import shutil
from pathlib import Path


def _mathjax_root():
    import mathjax

    return Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"


def _copy(app, exception):
    if exception is None and app.builder.format == "html":
        shutil.copytree(_mathjax_root(), Path(app.outdir) / "_static" / "mathjax", dirs_exist_ok=True)


def _textmacros(app, config):
    mj = dict(config.mathjax3_config or {})
    loader = dict(mj.get("loader", {}))
    loader["load"] = [*loader.get("load", []), "[tex]/textmacros"]
    tex = dict(mj.get("tex", {}))
    packages = dict(tex.get("packages", {}))
    packages["[+]"] = [*packages.get("[+]", []), "textmacros"]
    tex["packages"] = packages
    mj.update(loader=loader, tex=tex)
    config.mathjax3_config = mj


_FIT = """
(function () {
  var MIN = 0.75;  // never below 3/4 of MathJax's own size
  function fit() {
    document.querySelectorAll('mjx-container[jax="CHTML"][display="true"]').forEach(function (el) {
      var inner = el.firstElementChild;
      if (!inner) return;
      if (el.dataset.lstmkitSize === undefined) el.dataset.lstmkitSize = el.style.fontSize || "100%";
      el.style.fontSize = el.dataset.lstmkitSize;
      var avail = el.clientWidth, need = inner.getBoundingClientRect().width;
      if (avail > 0 && need > avail) {
        var scale = Math.max(MIN, 0.99 * avail / need);
        el.style.fontSize = (parseFloat(el.dataset.lstmkitSize) * scale).toFixed(1) + "%";
      }
    });
  }
  var timer;
  window.addEventListener("load", function () {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) MathJax.startup.promise.then(fit);
  });
  window.addEventListener("resize", function () { clearTimeout(timer); timer = setTimeout(fit, 150); });
})();
"""


def setup(app):
    if not (_mathjax_root() / "tex-chtml.js").exists():
        raise RuntimeError("MathJax not found: install the 'book' extra (django-static-mathjax)")
    app.config.mathjax_path = "mathjax/tex-chtml.js"
    app.connect("config-inited", _textmacros)
    app.add_js_file(None, body=_FIT)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
