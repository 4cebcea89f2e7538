"""Golden changes where review happens: the CI job's Markdown summary and a self-contained HTML report.

When a golden fails or is re-recorded, :func:`review_record` keeps what a reviewer needs as plain
data (so pytest-xdist workers can send it): the test, the outcome, the environment fields that moved
and, per leaf that moved, its greatest absolute and relative difference, how many elements left the
tolerance, and a small picture of *where* it moved: a heatmap of the absolute difference (at most
``GRID`` x ``GRID`` cells, each the greatest difference it covers) for 2-D and image-like leaves, a
histogram of the differences otherwise.

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
    ('max abs 0.5, max rel 0.5, 1 of 16 elements beyond rtol 1.3e-06 / atol 1e-05', 'heatmap')
    >>> "| t.py::test_x | k | failed | out | 0.5 |" in markdown({"k": record}, [], "pytest --hub-update")
    True
"""

from __future__ import annotations

import base64
import html as _html
from typing import Any, Mapping

GRID = 48
BINS = 20


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
            "summary": f"{len(comparison.diffs)} of {comparison.compared} leaves changed", "leaves": leaves}


def picture(obtained: Any, expected: Any) -> dict:
    """Where ``obtained`` moved from ``expected``: a heatmap of ``|difference|`` for 2-D and image-like leaves
    (leading dimensions folded by their greatest value), else a histogram of the differences."""
    import torch

    diff = (obtained.detach().cpu().to(torch.float64) - expected.cpu().to(torch.float64)).abs()
    diff = torch.nan_to_num(diff, nan=float("inf")).clamp_max(torch.finfo(torch.float64).max)
    if diff.dim() >= 2 and min(diff.shape[-2:]) > 1:
        grid = diff.reshape(-1, *diff.shape[-2:]).amax(dim=0)
        rows, cols = min(GRID, grid.shape[0]), min(GRID, grid.shape[1])
        cells = torch.nn.functional.adaptive_max_pool2d(grid[None, None], (rows, cols))[0, 0]
        return {"kind": "heatmap", "shape": list(diff.shape), "cells": [[float(v) for v in row] for row in cells]}
    signed = (obtained.detach().cpu().to(torch.float64) - expected.cpu().to(torch.float64)).reshape(-1)
    signed = signed[torch.isfinite(signed)]
    low, high = (float(signed.min()), float(signed.max())) if signed.numel() else (0.0, 0.0)
    counts = torch.histc(signed, bins=BINS, min=low, max=high if high > low else low + 1.0) if signed.numel() else []
    return {"kind": "histogram", "low": low, "high": high, "counts": [int(c) for c in counts]}


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
</style></head><body>
<h1>reprohub report</h1>
<ul>{summary}</ul>
{goldens}
<script>window.addEventListener("load", function () {{
  var pictures = document.images, drawn = 0;
  for (var i = 0; i < pictures.length; i++) {{ if (pictures[i].complete && pictures[i].naturalWidth > 0) drawn++; }}
  document.title = "reprohub report: " + drawn + " of " + pictures.length + " pictures drawn";
}});</script>
</body></html>
"""


def html(records: Mapping[str, dict], summary: list[str], fix: str) -> str:
    """A self-contained page: the same table as :func:`markdown` per golden, with its pictures inline."""
    esc = _html.escape
    parts = []
    for key, record in sorted(records.items()):
        rows = "".join(f"<tr><td>{esc(leaf['key'])}</td><td>{esc(leaf['summary'])}</td></tr>" for leaf in record["leaves"])
        figures = "".join(
            f"<figure><img alt=\"{esc(leaf['key'])}: {leaf['picture']['kind']}\" src=\"{_svg_url(leaf['picture'])}\">"
            f"<figcaption>{esc(leaf['key'])}: {leaf['picture']['kind']} of the difference</figcaption></figure>"
            for leaf in record["leaves"] if "picture" in leaf)
        moved = "".join(f"<li>{esc(field)}</li>" for field in record["environment"])
        parts.append(f"<section><h2 class=\"{esc(record['outcome'])}\">{esc(key)}: {esc(record['outcome'])}</h2>"
                     f"<p>{esc(record['test'])}: {esc(record['summary'])}</p>"
                     f"{'<p>Environment fields that differ:</p><ul>' + moved + '</ul>' if moved else ''}"
                     f"<table><tr><th>leaf</th><th>how it moved</th></tr>{rows}</table>{figures}</section>")
    if any(r["outcome"] == "failed" for r in records.values()):
        parts.append(f"<p>If the change is intended: <code>{esc(fix)}</code></p>")
    body = "".join(parts) or "<p>No golden failed or changed.</p>"
    return _PAGE.format(summary="".join(f"<li>{esc(line.strip())}</li>" for line in summary if line.strip()),
                        goldens=body)


def _svg_url(picture: dict) -> str:
    svg = _heatmap(picture) if picture["kind"] == "heatmap" else _histogram(picture)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _heatmap(picture: dict) -> str:
    cells = picture["cells"]
    top = max((v for row in cells for v in row), default=0.0) or 1.0
    size = max(4, 240 // max(len(cells), len(cells[0]) if cells else 1))
    rects = "".join(f'<rect x="{c * size}" y="{r * size}" width="{size}" height="{size}" fill="{_color(v / top)}"/>'
                    for r, row in enumerate(cells) for c, v in enumerate(row))
    width, height = size * (len(cells[0]) if cells else 1), size * len(cells)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 16}">{rects}'
            f'<text x="0" y="{height + 12}" font-size="11">|difference|, max {top:.3g}</text></svg>')


def _histogram(picture: dict) -> str:
    counts = picture["counts"] or [0]
    top = max(counts) or 1
    bars = "".join(f'<rect x="{i * 12}" y="{100 - 100 * n / top:.1f}" width="11" height="{100 * n / top:.1f}" '
                   f'fill="#3366cc"/>' for i, n in enumerate(counts))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{12 * len(counts)}" height="116">{bars}'
            f'<text x="0" y="112" font-size="11">{picture["low"]:.3g} .. {picture["high"]:.3g}</text></svg>')


def _color(fraction: float) -> str:
    """White (no difference) to dark red (the greatest)."""
    fraction = min(max(fraction, 0.0), 1.0)
    return f"rgb(255,{int(255 * (1 - fraction))},{int(255 * (1 - fraction) ** 2)})"
