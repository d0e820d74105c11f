"""Readable search snippets.

Sphinx's search page shows, under each hit, text cut from the hit's HTML. That HTML has the math
still as TeX source (MathJax typesets it only in the browser), so a snippet read
"The forget gate \\(f\\): what to keep", and snippets started with the print-only "Contents" box of the theme.
On the search page only, this wraps `Search.htmlToText` (searchtools.js): the page's navigation
boxes are dropped, and each formula becomes plain text (delimiters removed, common symbols as
Unicode: \\sigma -> σ, \\odot -> ⊙), e.g. "The forget gate f: what to keep".
"""

_SCRIPT = r"""
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || !Search.htmlToText) return;
  const SYMBOLS = {sigma: "σ", odot: "⊙", cdot: "·", times: "×", partial: "∂", nabla: "∇",
    approx: "≈", le: "≤", leq: "≤", ge: "≥", geq: "≥", ne: "≠", neq: "≠", in: "∈", to: "→",
    rightarrow: "→", leftarrow: "←", infty: "∞", sum: "Σ", prod: "Π", top: "⊤", prime: "′",
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", eta: "η", lambda: "λ",
    mu: "μ", rho: "ρ", tau: "τ", theta: "θ", Delta: "Δ", pm: "±", ldots: "…", dots: "…",
    cdots: "⋯", vdots: "⋮", mid: "|", lVert: "‖", rVert: "‖", Vert: "‖", quad: " ", qquad: " "};
  const MARKS = {bar: "\u0304", hat: "\u0302", tilde: "\u0303"};   // combining accents
  const plain = (tex) => tex
    .replace(/^\s*(\\\(|\\\[|\$\$?)|(\\\)|\\\]|\$\$?)\s*$/g, "")
    .replace(/\\(begin|end)\{[^}]*\}(\{[^}]*\})?/g, " ")
    .replace(/\\(text|mathrm|mathbf|mathbb|mathcal|operatorname|boldsymbol)\s*\{([^{}]*)\}/g, "$2")
    .replace(/\\(bar|hat|tilde)\s*(?:\{([^{}]*)\}|([A-Za-z]))/g,
      (all, accent, group, letter) => (group ?? letter) + MARKS[accent])
    .replace(/\\(left|right|big|Big|bigl|bigr|Bigl|Bigr|displaystyle|nonumber)\b/g, "")
    .replace(/\\[,;:! ]/g, " ")
    .replace(/\\\\|&/g, " ")
    .replace(/\\([A-Za-z]+)/g, (all, name) => SYMBOLS[name] ?? name)
    .replace(/\\([{}|])/g, "$1")
    .replace(/([_^])\{([^{}]{1})\}/g, "$1$2")
    .replace(/\s+/g, " ")
    .trim();
  const original = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll(".bd-header-article, .bd-sidebar-secondary, .onlyprint, .prev-next-area")
      .forEach((el) => el.remove());
    doc.querySelectorAll(".math").forEach((el) => { el.textContent = ` ${plain(el.textContent)} `; });
    return original(doc.documentElement.outerHTML, anchor)
      .replace(/\s+/g, " ").replace(/ ([,.;:)])/g, "$1");
  };
});
"""


def _search_page(app, pagename, templatename, context, doctree):
    if pagename == "search":
        app.add_js_file(None, body=_SCRIPT)


def setup(app):
    app.connect("html-page-context", _search_page)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
