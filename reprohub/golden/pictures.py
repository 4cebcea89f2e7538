"""Pictures of where a golden moved, for the HTML report: data a pytest-xdist worker can send, and its SVG.

For a 2-D or image-like leaf, :func:`picture` keeps, per slice along the leading dimensions that moved
(a channel of an image batch; at most ``MAX_PANELS``, the most moved first), three maps of at most
``GRID`` x ``GRID`` cells: the expected values, the obtained values (the two on one colour scale) and
the absolute difference (its own scale, from zero).  Other leaves get a histogram of the signed
differences.  Every leaf keeps its ``WORST`` greatest differences with their full index.

:func:`svg` draws one map as a framed picture with its title, axis labels (row and column, first and
last index) and a colour bar with the scale's ends, so "no difference" reads as the bar's low end
inside a frame, never white on white.

Example:
    >>> import torch
    >>> expected = torch.zeros(1, 3, 8, 8); obtained = expected.clone(); obtained[0, 1] += 0.01
    >>> obtained[0, 1, 3, 5] = 0.033
    >>> found = picture(obtained, expected)
    >>> found["kind"], [panel["index"] for panel in found["panels"]], found["worst"][0]["index"]
    ('maps', ['[0, 1]'], '[0, 1, 3, 5]')
    >>> svg(found["panels"][0]["difference"], 0.0, found["diff_max"], "difference").count("<rect") > 64
    True
"""

from __future__ import annotations

from typing import Any

GRID = 48
BINS = 20
MAX_PANELS = 6
WORST = 8
_CELL_AREA = 192  # pixels a map's side takes, whatever its cells


def picture(obtained: Any, expected: Any) -> dict:
    """Where ``obtained`` moved from ``expected`` (see the module docstring), as plain data."""
    import torch

    got, want = (t.detach().cpu().to(torch.float64) for t in (obtained, expected))
    diff = torch.nan_to_num((got - want).abs(), nan=float("inf")).clamp_max(torch.finfo(torch.float64).max)
    worst = _worst(got, want, diff)
    if diff.dim() >= 2 and min(diff.shape[-2:]) > 1:
        flat = [t.reshape(-1, *diff.shape[-2:]) for t in (want, got, diff)]
        moved = sorted(range(flat[2].shape[0]), key=lambda n: -float(flat[2][n].max()))[:MAX_PANELS]
        moved = [n for n in moved if float(flat[2][n].max()) > 0] or moved[:1]
        lead = diff.shape[:-2]
        values = torch.cat([flat[0][moved].reshape(-1), flat[1][moved].reshape(-1)])
        values = values[torch.isfinite(values)]
        panels = [{"index": full_index(n, lead) if lead else "", "expected": _cells(flat[0][n], "avg"),
                   "obtained": _cells(flat[1][n], "avg"), "difference": _cells(flat[2][n], "max")}
                  for n in sorted(moved)]
        return {"kind": "maps", "shape": list(diff.shape), "panels": panels, "worst": worst,
                "scale": [float(values.min()), float(values.max())] if values.numel() else [0.0, 1.0],
                "diff_max": float(diff.max())}
    signed = (got - want).reshape(-1)
    signed = signed[torch.isfinite(signed)]
    low, high = (float(signed.min()), float(signed.max())) if signed.numel() else (0.0, 0.0)
    counts = torch.histc(signed, bins=BINS, min=low, max=high if high > low else low + 1.0) if signed.numel() else []
    return {"kind": "histogram", "low": low, "high": high, "counts": [int(c) for c in counts], "worst": worst}


def _cells(grid: Any, pool: str) -> list[list[float]]:
    """A 2-D tensor as at most GRID x GRID cells (the mean, or for a difference the greatest, each covers)."""
    import torch

    rows, cols = min(GRID, grid.shape[0]), min(GRID, grid.shape[1])
    pooled = (torch.nn.functional.adaptive_max_pool2d if pool == "max" else torch.nn.functional.adaptive_avg_pool2d)
    cells = pooled(torch.nan_to_num(grid)[None, None], (rows, cols))[0, 0]
    return [[float(v) for v in row] for row in cells]


def _worst(got: Any, want: Any, diff: Any) -> list[dict]:
    count = min(WORST, diff.numel())
    import torch

    # the greatest first; among equal ones the first by index (stable), so the same difference lists the same rows
    top = torch.sort(diff.reshape(-1), descending=True, stable=True).indices[:count].tolist() if count else []
    return [{"index": full_index(i, diff.shape), "expected": float(want.reshape(-1)[i]), "obtained": float(got.reshape(-1)[i]),
             "difference": float(got.reshape(-1)[i] - want.reshape(-1)[i])} for i in top if float(diff.reshape(-1)[i]) > 0]


def full_index(flat: int, shape: Any) -> str:
    """The full index of element ``flat`` of a tensor of ``shape``: ``[0, 1, 3, 4]``."""
    index = []
    for size in reversed(list(shape)):
        index.append(flat % size if size else 0)
        flat //= size if size else 1
    return f"[{', '.join(map(str, reversed(index)))}]"


# -- SVG ------------------------------------------------------------------------------------------------------

def svg(cells: list[list[float]], low: float, high: float, title: str, shape: "list[int] | None" = None) -> str:
    """One framed map: ``title`` above, row/column labels, a colour bar from ``low`` to ``high`` on the right."""
    rows, cols = len(cells), len(cells[0]) if cells else 1
    size = max(3, _CELL_AREA // max(rows, cols, 1))
    width, height = cols * size, rows * size
    left, top = 34, 22
    span = (high - low) or 1.0
    rects = "".join(f'<rect x="{left + c * size}" y="{top + r * size}" width="{size}" height="{size}" '
                    f'fill="{_color((v - low) / span)}"/>' for r, row in enumerate(cells) for c, v in enumerate(row))
    last_row, last_col = ((shape[-2] - 1, shape[-1] - 1) if shape else (rows - 1, cols - 1))
    bar_x = left + width + 14
    bar = "".join(f'<rect x="{bar_x}" y="{top + height - (i + 1) * height / 20:.1f}" width="12" '
                  f'height="{height / 20 + 0.5:.1f}" fill="{_color(i / 19)}"/>' for i in range(20))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{bar_x + 70}" height="{top + height + 34}" '
            f'font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="#fff"/>'
            f'<text x="{left}" y="14" font-weight="bold">{_escape(title)}</text>{rects}'
            f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#333"/>'
            f'<text x="{left}" y="{top + height + 13}">0</text>'
            f'<text x="{left + width}" y="{top + height + 13}" text-anchor="end">{last_col}</text>'
            f'<text x="{left + width / 2}" y="{top + height + 27}" text-anchor="middle">column</text>'
            f'<text x="{left - 4}" y="{top + 9}" text-anchor="end">0</text>'
            f'<text x="{left - 4}" y="{top + height}" text-anchor="end">{last_row}</text>'
            f'<text x="10" y="{top + height / 2}" transform="rotate(-90 10 {top + height / 2})" '
            f'text-anchor="middle">row</text>{bar}'
            f'<rect x="{bar_x}" y="{top}" width="12" height="{height}" fill="none" stroke="#333"/>'
            f'<text x="{bar_x + 16}" y="{top + 9}">{high:.3g}</text>'
            f'<text x="{bar_x + 16}" y="{top + height}">{low:.3g}</text></svg>')


def histogram_svg(found: dict) -> str:
    """The signed differences of a leaf that is no map, framed, with its ends labelled."""
    counts = found["counts"] or [0]
    peak = max(counts) or 1
    bars = "".join(f'<rect x="{30 + i * 12}" y="{20 + 100 - 100 * n / peak:.1f}" width="11" '
                   f'height="{100 * n / peak:.1f}" fill="#3366cc"/>' for i, n in enumerate(counts))
    width = 30 + 12 * len(counts)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + 10}" height="150" font-family="sans-serif" '
            f'font-size="11"><rect width="100%" height="100%" fill="#fff"/><text x="30" y="14" font-weight="bold">'
            f'obtained - expected (count)</text>{bars}<rect x="30" y="20" width="{width - 30}" height="100" '
            f'fill="none" stroke="#333"/><text x="30" y="134">{found["low"]:.3g}</text>'
            f'<text x="{width}" y="134" text-anchor="end">{found["high"]:.3g}</text>'
            f'<text x="26" y="30" text-anchor="end">{peak}</text></svg>')


def _color(fraction: float) -> str:
    """A sequential scale readable on white: pale blue (low) through teal to dark purple (high)."""
    fraction = min(max(fraction, 0.0), 1.0)
    stops = ((222, 235, 247), (65, 182, 196), (37, 52, 148), (64, 0, 75))
    at = fraction * (len(stops) - 1)
    i = min(int(at), len(stops) - 2)
    t = at - i
    return "rgb({},{},{})".format(*(round(a + (b - a) * t) for a, b in zip(stops[i], stops[i + 1])))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
