"""Golden changes where review happens: the CI job's Markdown summary and a self-contained HTML report.

When a golden fails or is re-recorded, :func:`review_record` keeps what a reviewer needs as plain
data (so pytest-xdist workers can send it): the test, the outcome, the commit and input recorded, the
environment fields that moved and, per leaf that moved, its greatest absolute and relative
difference, how many elements left the tolerance, and pictures of *where* it moved
(:mod:`reprohub.golden.pictures`: expected, obtained and difference maps for 2-D and image-like
leaves, a histogram otherwise, and the greatest differences with their full index).

:func:`markdown` renders the session for ``$GITHUB_STEP_SUMMARY``; :func:`html` renders a page
whose pictures are inline SVG (``data:`` URLs) under a Content-Security-Policy that allows nothing
else, so it opens anywhere, offline, and requests nothing.

Example:
    >>> import torch
    >>> from reprohub.golden.engine import Golden, compare
    >>> golden = Golden({"out": torch.ones(4, 4)}, {})
    >>> moved = torch.ones(4, 4); moved[1, 2] = 1.5
    >>> record = review_record("t.py::test_x", "failed", compare(moved, golden), {"out": moved}, golden, [])
    >>> record["leaves"][0]["summary"], record["leaves"][0]["picture"]["kind"]
    ('max abs 0.5, max rel 0.5, 1 of 16 elements beyond rtol 1.3e-06 / atol 1e-05', 'maps')
    >>> "| t.py::test_x | k | failed | out | 0.5 |" in markdown({"k": record}, [], "pytest --hub-update")
    True
"""

from __future__ import annotations

import base64
import math
import html as _html
from typing import Any, Mapping

from .pictures import histogram_svg, picture, svg



def review_record(test: str, outcome: str, comparison: Any, obtained: Mapping[str, Any], golden: Any,
                  environment: list[str]) -> dict:
    """What a reviewer sees of one golden that failed or was re-recorded, as JSON-able data."""
    leaves = []
    for diff in comparison.diffs:
        leaf = {"key": diff.key, "summary": diff.summary or diff.reason, "max_abs": diff.max_abs,
                "max_rel": diff.max_rel}
        got, want = obtained.get(diff.key), golden.leaves.get(diff.key)
        if diff.summary and got is not None and want is not None:
            leaf["picture"] = picture(got, want)
        leaves.append(leaf)
    return {"test": test, "outcome": outcome, "environment": list(environment),
            "summary": f"{len(comparison.diffs)} of {comparison.compared} leaves changed", "leaves": leaves,
            "commit": golden.metadata.get("commit", ""), "input": golden.metadata.get("input", "")}


# -- Markdown ---------------------------------------------------------------------------------------------

def _cell(text: Any) -> str:
    from ..redact import printable

    return printable(str(text)).replace("|", "\\|")


def markdown(records: Mapping[str, dict], summary: list[str], fix: str) -> str:
    """The session as Markdown for ``$GITHUB_STEP_SUMMARY``: the counts, one table row per leaf that moved,
    the environment fields that differ, and the command that accepts the change."""
    lines = ["## reprohub", ""]
    if records:
        lines += ["| test | golden | outcome | leaf | max abs | max rel | beyond tolerance |",
                  "|---|---|---|---|---|---|---|"]
        for key, record in sorted(records.items()):
            for leaf in record["leaves"] or [{"key": "", "summary": record["summary"], "max_abs": "", "max_rel": ""}]:
                beyond = leaf["summary"].rpartition(", ")[2] if leaf.get("picture") else leaf["summary"]
                lines.append(f"| {_cell(record['test'])} | {_cell(key)} | {record['outcome']} | {_cell(leaf['key'])} "
                             f"| {_number(leaf['max_abs'])} | {_number(leaf['max_rel'])} | {_cell(beyond)} |")
        origins = [f"- {_cell(key)}: origin: {_cell(record['attribution']['origin'])} "
                   f"({_cell(record['attribution']['why'])})" for key, record in sorted(records.items())
                   if record.get("attribution")]
        if origins:
            lines += ["", "Where each change starts (each module run again on its recorded input):", *origins]
        moved = sorted({field for record in records.values() for field in record["environment"]})
        if moved:
            lines += ["", "Environment fields that differ from the recording: " + "; ".join(map(_cell, moved))]
        if any(r["outcome"] == "failed" for r in records.values()):
            lines += ["", f"If the change is intended: `{_cell(fix)}`"]
        lines.append("")
    shown = [f"- {_cell(line.strip())}" for line in summary if line.strip()]  # the terminal's lines, folded
    lines += ["<details><summary>The session's summary</summary>", "", *shown, "", "</details>"] if records else shown
    return "\n".join(lines) + "\n"


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# -- HTML ---------------------------------------------------------------------------------------------------

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<link rel="icon" href="data:,">
<title>reprohub report</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}.failed{{color:#b00}}figure{{display:inline-block;margin:.5em}}
.maps{{white-space:nowrap}}table.worst td{{font-family:monospace;text-align:right}}
</style></head><body>
<h1>reprohub report</h1>
<ul>{summary}</ul>
{goldens}
<script>window.addEventListener("load", function () {{
  var pictures = document.images, drawn = 0, filled = 0;
  for (var i = 0; i < pictures.length; i++) {{
    var image = pictures[i];
    if (!(image.complete && image.naturalWidth > 0)) continue;
    drawn++;
    try {{  /* what the picture shows: more than its frame and background (a blank panel has 2 colours or fewer) */
      var canvas = document.createElement("canvas");
      canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
      var context = canvas.getContext("2d"); context.drawImage(image, 0, 0);
      var pixels = context.getImageData(0, 0, canvas.width, canvas.height).data, colours = {{}}, count = 0;
      for (var p = 0; p < pixels.length && count < 8; p += 4) {{
        var c = pixels[p] + "," + pixels[p + 1] + "," + pixels[p + 2];
        if (!colours[c]) {{ colours[c] = 1; count++; }}
      }}
      if (count >= 8) filled++;
    }} catch (e) {{}}
  }}
  document.title = "reprohub report: " + drawn + " of " + pictures.length + " pictures drawn, " + filled + " with content";
}});</script>
</body></html>
"""


def html(records: Mapping[str, dict], summary: list[str], fix: str) -> str:
    """A self-contained page: per golden its commit, input and environment, per leaf that moved how it moved,
    the expected, obtained and difference maps side by side (a row per moved channel) with colour bars, and
    its greatest differences with their full index."""
    esc = _html.escape
    parts = []
    for key, record in sorted(records.items()):
        rows = "".join(f"<tr><td>{esc(leaf['key'])}</td><td>{esc(leaf['summary'])}</td></tr>" for leaf in record["leaves"])
        moved = "".join(f"<li>{esc(field)}</li>" for field in record["environment"])
        about = "".join(f"<li>{name}: <code>{esc(str(record.get(field) or '(not recorded)'))}</code></li>"
                        for name, field in (("commit", "commit"), ("input", "input")))
        parts.append(f"<section><h2 class=\"{esc(record['outcome'])}\">{esc(key)}: {esc(record['outcome'])}</h2>"
                     f"<p>{esc(record['test'])}: {esc(record['summary'])}</p><ul>{about}</ul>"
                     f"{'<p>Environment fields that differ:</p><ul>' + moved + '</ul>' if moved else ''}"
                     f"<table><tr><th>leaf</th><th>how it moved</th></tr>{rows}</table>"
                     + _attribution_html(record.get("attribution"))
                     + "".join(_leaf_html(leaf) for leaf in record["leaves"] if "picture" in leaf) + "</section>")
    if any(r["outcome"] == "failed" for r in records.values()):
        parts.append(f"<p>If the change is intended: <code>{esc(fix)}</code></p>")
    body = "".join(parts) or "<p>No golden failed or changed.</p>"
    return _PAGE.format(summary="".join(f"<li>{esc(line.strip())}</li>" for line in summary if line.strip()),
                        goldens=body)


def _attribution_html(found: "dict | None") -> str:
    """Where the change starts: the origin, why, and a bar per module call -- the error it adds itself (local)
    against the error it was handed (inherited), relative to its own recorded tensors, on a log scale from
    1e-12 to 1."""
    if not found:
        return ""
    esc = _html.escape
    rows = "".join(
        f"<tr><td>{esc(row['label'])}</td><td>{esc(row['cls'])}</td><td>{esc(row['verdict'])}</td>"
        f"<td>{_bar(row.get('local_rel'), '#b00', 'local')}{_bar(row.get('inherited_rel'), '#888', 'inherited')}</td></tr>"
        for row in found["rows"])
    return (f"<h3>origin: {esc(found['origin'])}</h3><p>{esc(found['why'])}</p>"
            "<table class=\"origin\"><tr><th>module</th><th>class</th><th>verdict</th>"
            f"<th>local (red) and inherited (grey) error, relative, 1e-12 to 1</th></tr>{rows}</table>")


def _bar(relative: "float | None", colour: str, name: str) -> str:
    if relative is None:
        return f"<div title=\"{name}: not measured\">-</div>"
    if isinstance(relative, str) or not math.isfinite(relative):  # "inf": a shape that changed
        width = 100.0
    else:
        width = 0.0 if relative <= 0 else min(100.0, max(1.0, (math.log10(relative) + 12) / 12 * 100))
    return (f"<div title=\"{name}: {relative:.3g}\" style=\"background:{colour};height:.5em;width:{width:.0f}%;"
            f"margin:.1em 0\"></div>")


def _leaf_html(leaf: dict) -> str:
    esc, found = _html.escape, leaf["picture"]
    html = f"<h3>{esc(leaf['key'])}</h3>"
    if found["kind"] == "maps":
        low, high = found["scale"]
        for panel in found["panels"]:
            where = f"{leaf['key']}{panel['index']}"
            maps = [("expected", panel["expected"], low, high), ("obtained", panel["obtained"], low, high),
                    ("difference", panel["difference"], 0.0, found["diff_max"])]
            html += "<div class=\"maps\">" + "".join(
                f"<figure><img alt=\"{esc(where)}: {name}\" src=\"{_data_url(svg(cells, lo, hi, f'{where} {name}', found['shape']))}\">"
                f"<figcaption>{esc(where)}: {name}</figcaption></figure>" for name, cells, lo, hi in maps) + "</div>"
    else:
        html += (f"<figure><img alt=\"{esc(leaf['key'])}: histogram\" src=\"{_data_url(histogram_svg(found))}\">"
                 f"<figcaption>{esc(leaf['key'])}: histogram of the differences</figcaption></figure>")
    worst = "".join(f"<tr><td>{esc(w['index'])}</td><td>{w['expected']:.6g}</td><td>{w['obtained']:.6g}</td>"
                    f"<td>{w['difference']:+.6g}</td></tr>" for w in found.get("worst", []))
    if worst:
        html += ("<table class=\"worst\"><tr><th>index</th><th>expected</th><th>obtained</th><th>difference</th></tr>"
                 f"{worst}</table>")
    return html


def _data_url(image: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(image.encode()).decode()
