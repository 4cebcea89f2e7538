"""How two tensors' values differ: the check, and the torch-style report of a mismatch.

Works chunk by chunk over the flattened tensors (``CHUNK_ELEMENTS`` at a time), so memory stays bounded
for any output; a second pass gathers the report's figures only when some element is out of tolerance.

Example:
    >>> import torch
    >>> found = mismatch(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]), rtol=1e-6, atol=1e-5)
    >>> found.summary(1e-6, 1e-5)
    'max abs 0.5, max rel 0.25, 1 of 2 elements beyond rtol 1e-06 / atol 1e-05'
"""

from __future__ import annotations

import math
from typing import Any

CHUNK_ELEMENTS = 1 << 22
MAX_TABLE_ROWS = 10


def value_mismatch(actual, expected, rtol: float, atol: float, equal_nan: bool = False) -> str | None:
    """None if close; else a torch-style report of how the values differ."""
    found = mismatch(actual, expected, rtol, atol, equal_nan)
    return None if found is None else found.report(actual.shape, rtol, atol)


def mismatch(actual, expected, rtol: float, atol: float, equal_nan: bool = False) -> "MismatchStats | None":
    """None if close; else the figures of how the values differ (:class:`MismatchStats`)."""
    expected = expected.to(actual.device)
    if _exactly_equal(actual, expected, equal_nan):
        return None
    a, e = actual.reshape(-1), expected.reshape(-1)
    chunks = [(start, a[start:start + CHUNK_ELEMENTS], e[start:start + CHUNK_ELEMENTS])
              for start in range(0, a.numel(), CHUNK_ELEMENTS)]
    if not any(_count_bad(ca, ce, rtol, atol, equal_nan) for _, ca, ce in chunks):
        return None
    stats = MismatchStats(a.numel())  # second pass only for the failure report
    for start, ca, ce in chunks:
        stats.add(start, ca, ce, rtol, atol, equal_nan)
    return stats


def _count_bad(a, e, rtol: float, atol: float, equal_nan: bool) -> int:
    """Elements of one chunk outside tolerance (exact for integers and bool)."""
    import torch

    if not (a.dtype.is_floating_point or a.dtype.is_complex):
        return int((a != e).sum())
    if a.dtype.itemsize < 4:  # half, bfloat16, float8: compare in float32, as the report does
        a, e = a.float(), e.float()
    return int((~torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=equal_nan)).sum())


def _exactly_equal(a, e, equal_nan: bool) -> bool:
    import torch

    if a.dtype.is_floating_point or a.dtype.is_complex:
        if equal_nan:
            return bool(torch.equal(a, e)) or bool(torch.all((a == e) | (torch.isnan(a) & torch.isnan(e))))
    return bool(torch.equal(a, e))


class MismatchStats:
    """The elements out of tolerance, the greatest absolute and relative differences and where, a few rows."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.mismatched = 0
        self.abs_sum = 0.0
        self.max_abs = (-1.0, 0)
        self.max_rel = (-1.0, 0)
        self.rows: list[tuple[int, Any, Any, float]] = []
        self.sample: list = []

    def add(self, start, a, e, rtol, atol, equal_nan) -> None:
        import torch

        exact = not (a.dtype.is_floating_point or a.dtype.is_complex)
        if exact:  # integers and bool are compared and reported as integers: 2**62 + 1 differs by 1, not 0
            bad = a != e
            finite = bad.to(torch.int64) if a.dtype == torch.bool else (a.to(torch.int64) - e.to(torch.int64)).abs()
            ef = e.to(torch.float64)
        else:
            compute = torch.float64 if a.dtype == torch.float64 else torch.float32
            if a.dtype.is_complex:
                compute = torch.complex128 if a.dtype == torch.complex128 else torch.complex64
            af, ef = a.to(compute), e.to(compute)
            diff = (af - ef).abs()
            bad = ~torch.isclose(af, ef, rtol=rtol, atol=atol, equal_nan=equal_nan)
            finite = torch.nan_to_num(diff.real if diff.is_complex() else diff, nan=math.inf)
        as_float = finite.to(torch.float64) if exact else finite
        self.abs_sum += float(torch.nan_to_num(as_float, posinf=0.0).sum())
        self.sample.append(as_float[:: max(1, finite.numel() // 4096)].cpu())
        n_bad = int(bad.sum())
        if not n_bad:
            return
        self.mismatched += n_bad

        def difference(i: int):
            return abs(int(a[i].item()) - int(e[i].item())) if exact else float(finite[i])

        idx = int(torch.argmax(torch.where(bad, finite, torch.zeros_like(finite))))
        if difference(idx) > self.max_abs[0]:
            self.max_abs = (difference(idx), start + idx)
        rel = as_float / ef.abs().real.clamp_min(torch.finfo(torch.float32).tiny)
        rel = torch.where(bad, torch.nan_to_num(rel, nan=math.inf), torch.zeros_like(rel))
        ridx = int(torch.argmax(rel))
        if float(rel[ridx]) > self.max_rel[0]:
            self.max_rel = (float(rel[ridx]), start + ridx)
        if len(self.rows) < MAX_TABLE_ROWS:
            for i in torch.nonzero(bad).reshape(-1)[: MAX_TABLE_ROWS - len(self.rows)].tolist():
                self.rows.append((start + i, a[i].item(), e[i].item(), difference(i)))

    def summary(self, rtol: float, atol: float) -> str:
        """One line: the greatest differences and how many elements left the tolerance."""
        return (f"max abs {_number(self.max_abs[0])}, max rel {self.max_rel[0]:.6g}, {self.mismatched} of "
                f"{self.total} elements beyond rtol {rtol:g} / atol {atol:g}")

    def report(self, shape, rtol, atol) -> str:
        import torch

        median = float(torch.cat(self.sample).median()) if self.sample else 0.0
        lines = [
            f"Mismatched elements: {self.mismatched} / {self.total} ({100.0 * self.mismatched / self.total:.1f}%)",
            f"Greatest absolute difference: {_number(self.max_abs[0])} at index {_unravel(self.max_abs[1], shape)}"
            f" (up to {atol:g} allowed)",
            f"Greatest relative difference: {self.max_rel[0]:.6g} at index {_unravel(self.max_rel[1], shape)}"
            f" (up to {rtol:g} allowed)",
            f"Mean absolute error: {self.abs_sum / max(self.total, 1):.6g}; median absolute error: {median:.6g}"
            + (" (sampled)" if self.total > 4096 else ""),
            f"{'index':>16} {'obtained':>14} {'expected':>14} {'difference':>12}",
        ]
        for flat, got, want, d in self.rows:
            lines.append(f"{str(_unravel(flat, shape)):>16} {_short(got):>14} {_short(want):>14} {_number(d):>12}")
        return "\n".join(lines)


def _number(value) -> str:
    """A difference as the report shows it: integers in full, floats to six significant digits."""
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def _short(value) -> str:
    return f"{value:.7g}" if isinstance(value, float) else str(value)[:14]


def _unravel(flat: int, shape) -> tuple[int, ...]:
    index = []
    for size in reversed(tuple(shape)):
        index.append(flat % size if size else 0)
        flat //= size if size else 1
    return tuple(reversed(index))
