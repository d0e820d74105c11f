"""`lstmkit similarity ASSIGNMENT`: which submissions look copied, from each other or from published code.

Each submission's solution code (its solution cells, in the order of the source notebook) is
fingerprinted with copydetect's winnowing (Schleimer et al. 2003; names, strings and comments are
normalised first, so renaming variables or rewording comments does not hide a copy). The code the
release notebook gives (signatures, docstrings, hints, stubs) is boilerplate: its fingerprints are
removed everywhere. Then

- every pair of submissions is compared: a pair's score is the larger of the two shares of code
  (after boilerplate) that also occurs in the other submission;
- every submission is compared with the published code: the reference solution (the source notebook's
  solution cells), `lstmkit/reference.py`, `lstmkit/sequences.py` and the code cells of each book
  chapter; the score is the share of the submission's code that occurs there.

Both lists are ranked, written to DIR/similarity-<id>.json and to DIR/similarity-<id>.html with the
matching lines highlighted side by side. It reads the submissions only: no score changes. A high score
is a reason to look, not a verdict (short assignments leave little room for different solutions).
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
from itertools import combinations
from pathlib import Path

import nbformat
import numpy as np

from .plan import PlanError, plan_from_notebook, student_cells

K, WINDOW = 25, 1  # copydetect's noise threshold (k-gram length) and guarantee threshold - k + 1
SOLUTION = re.compile(r"[ \t]*### BEGIN SOLUTION.*?### END SOLUTION[ \t]*\n?", re.S)


def _code(plan, notebook_text):
    try:
        nb = nbformat.reads(notebook_text, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable notebook: no code
        return ""
    return "\n\n".join(src for _, role, src in student_cells(plan, nb) if role == "solution")


def _fingerprint(name, code, boilerplate=()):
    from copydetect import CodeFingerprint

    logging.getLogger().setLevel(logging.ERROR)  # copydetect logs empty files as warnings
    return CodeFingerprint(f"{name}.py", K, WINDOW, list(boilerplate), fp=io.StringIO(code))


def _book_code(book):
    """chapter path -> the code of its code cells (MyST ```{code-cell} blocks)."""
    out = {}
    if book is None or not Path(book).is_dir():
        return out
    for path in sorted(Path(book).rglob("*.md")):
        text = path.read_text(errors="replace")
        cells = re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, re.S | re.M)
        code = "\n\n".join(re.sub(r"^:[a-z_-]+:.*\n", "", c, flags=re.M) for c in cells)
        if code.strip():
            out[f"book/{path.relative_to(book).as_posix()}"] = code
    return out


def _compare(a, b):
    from copydetect import compare_files

    if not a.hashes or not b.hashes:
        return 0.0, 0.0, (np.zeros((2, 0), int), np.zeros((2, 0), int))
    _, (s1, s2), slices = compare_files(a, b)
    return float(s1), float(s2), slices


def _highlight(fp, slices):
    from copydetect.utils import highlight_overlap

    if np.asarray(slices).size == 0:
        return html.escape(fp.raw_code)
    text, _ = highlight_overlap(fp.raw_code, np.asarray(slices), "<mark>", "</mark>", escape_html=True)
    return text


def similarity(assignment, course="assignments", book=None, top=20, threshold=0.5, progress=True):
    """Rank pairs of submissions and submissions close to published code; write the JSON and HTML.

    Returns {"pairs": [...], "published": [...], "html": path, "json": path}."""
    import lstmkit

    course = Path(course)
    notebooks = sorted((course / "source" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        raise PlanError(f"{course}/source/{assignment}/ should hold one notebook, it holds {len(notebooks)}")
    source = notebooks[0].read_text()
    plan = plan_from_notebook(source, assignment, notebooks[0].stem)  # no seeds needed: no course secret
    solutions = [src for role, _, src in plan.cells if role == "solution"]
    given = "\n\n".join(SOLUTION.sub("", s) for s in solutions)
    boilerplate = _fingerprint("release", given).hashes

    if book is None:
        guess = Path(lstmkit.__file__).resolve().parents[1] / "book"
        book = guess if guess.is_dir() else None
    published = {"reference solution (source notebook)": _code(plan, source)}
    for name in ("reference.py", "sequences.py"):  # the NumPy reference and the sequences assignment's
        path = Path(lstmkit.__file__).resolve().parent / name
        if path.exists():
            published[f"lstmkit/{name}"] = path.read_text()
    published.update(_book_code(book))
    published_fp = {name: _fingerprint(name, code, boilerplate) for name, code in published.items()}

    students = {}
    for folder in sorted((course / "submitted").glob(f"*/{assignment}")):
        path = folder / f"{plan.notebook}.ipynb"
        if path.exists():
            students[folder.parent.name] = _fingerprint(folder.parent.name, _code(plan, path.read_text(
                errors="replace")), boilerplate)
    if not students:
        raise FileNotFoundError(f"no submissions of {assignment} in "
                                f"{course}/submitted/<student>/{assignment}/")

    from tqdm.auto import tqdm

    pairs = []
    n = len(students)
    for (a, fa), (b, fb) in tqdm(combinations(students.items(), 2), total=n * (n - 1) // 2, desc="comparing",
                                 unit="pair", disable=not progress, mininterval=1):
        s1, s2, slices = _compare(fa, fb)
        pairs.append({"a": a, "b": b, "score": max(s1, s2), "share_a": s1, "share_b": s2, "_slices": slices})
    pairs.sort(key=lambda p: (-p["score"], p["a"], p["b"]))

    near = []
    for student, fs in tqdm(students.items(), desc="against published code", unit="submission",
                            disable=not progress, mininterval=1):
        best = None
        for name, fp in published_fp.items():
            s1, _, slices = _compare(fs, fp)
            if best is None or s1 > best["score"]:
                best = {"student": student, "source": name, "score": s1, "_slices": slices}
        near.append(best)
    near.sort(key=lambda p: (-p["score"], p["student"]))

    def public(rows):
        return [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]

    out_json = course / f"similarity-{assignment}.json"
    out_html = course / f"similarity-{assignment}.html"
    out_json.write_text(json.dumps({"assignment": assignment, "k": K, "window": WINDOW,
                                    "published": public(near), "pairs": public(pairs[:max(top, 100)])},
                                   indent=1))
    out_html.write_text(_page(assignment, pairs, near, students, published_fp, top, threshold))
    return {"pairs": public(pairs), "published": public(near), "html": out_html, "json": out_json}


def _page(assignment, pairs, near, students, published_fp, top, threshold):
    esc = html.escape

    def table(rows, cols):
        head = "".join(f"<th>{esc(c)}</th>" for c in cols)
        return f"<div class='wide'><table><tr>{head}</tr>{''.join(rows)}</table></div>"

    pair_rows = [f"<tr class='{'hi' if p['score'] >= threshold else ''}'><td>{k + 1}</td>"
                 f"<td>{esc(p['a'])}</td><td>{esc(p['b'])}</td><td>{p['score']:.0%}</td>"
                 f"<td>{p['share_a']:.0%} / {p['share_b']:.0%}</td>"
                 f"<td><a href='#pair-{k}'>lines</a></td></tr>"
                 for k, p in enumerate(pairs[:top])]
    near_rows = [f"<tr class='{'hi' if p['score'] >= threshold else ''}'><td>{k + 1}</td>"
                 f"<td>{esc(p['student'])}</td><td>{esc(p['source'])}</td><td>{p['score']:.0%}</td>"
                 f"<td><a href='#near-{k}'>lines</a></td></tr>" for k, p in enumerate(near[:top])]
    details = []
    for k, p in enumerate(pairs[:top]):
        left, right = p["_slices"]
        details.append(f"<h3 id='pair-{k}'>{esc(p['a'])} and {esc(p['b'])}: {p['score']:.0%}</h3>"
                       f"<div class='side'><pre>{_highlight(students[p['a']], left)}</pre>"
                       f"<pre>{_highlight(students[p['b']], right)}</pre></div>")
    for k, p in enumerate(near[:top]):
        left, right = p["_slices"]
        details.append(f"<h3 id='near-{k}'>{esc(p['student'])} and {esc(p['source'])}: {p['score']:.0%}</h3>"
                       f"<div class='side'><pre>{_highlight(students[p['student']], left)}</pre>"
                       f"<pre>{_highlight(published_fp[p['source']], right)}</pre></div>")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(assignment)}: similar submissions</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{font-family: sans-serif; margin: 2em}} table {{border-collapse: collapse}}
.wide {{overflow-x: auto}} pre {{min-width: 0}}
@media (max-width: 50em) {{body {{margin: 1em}} .side {{flex-direction: column}}}}
td, th {{padding: .2em .7em; border-bottom: 1px solid #ccc; text-align: left}} tr.hi {{background: #fde2e2}}
.side {{display: flex; gap: 1em}} pre {{flex: 1; overflow-x: auto; background: #f7f7f7; padding: .5em;
font-size: 12px}} mark {{background: #ffd54f}}</style></head><body>
<h1>{esc(assignment)}: similar submissions</h1>
<p>{len(students)} submissions; code given by the release notebook is ignored. Scores are the share of a
submission's code (after normalising names and strings) found in the other code, by copydetect's winnowed
fingerprints (k = {K}); a pair's score is the larger of its two shares (the first student's code found in
the second's, and the reverse). Rows at or above {threshold:.0%} are highlighted. A high score is a
reason to look at the code, not a verdict; no score was changed.</p>
<h2>Pairs of submissions</h2>
{table(pair_rows, ["rank", "student", "student", "score", "shares", ""])}
<h2>Submissions close to published code</h2>
{table(near_rows, ["rank", "student", "closest published code", "share", ""])}
<h2>Matching lines</h2>
{''.join(details)}
</body></html>
"""
