"""Interleaved timing and the result table: the parts every benchmark case shares.

Each case runs its contenders round-robin (A B C A B C ...) so drift on a noisy
machine hits them alike, and reports medians, the min-max spread, throughput
and the speed ratio against the case's baseline, all from the same run.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Row:
    """One contender in one case: its timings and extras (requests made, peak memory...)."""

    case: str
    contender: str
    seconds: list[float] = field(default_factory=list)
    size_bytes: int | None = None
    baseline: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def throughput_mb_s(self) -> float | None:
        return self.size_bytes / self.median / 1e6 if self.size_bytes else None

    def as_dict(self, baseline: "Row | None") -> dict:
        return {"case": self.case, "contender": self.contender, "median_s": self.median, "min_s": min(self.seconds),
                "max_s": max(self.seconds), "runs": len(self.seconds), "throughput_MB_s": self.throughput_mb_s,
                "speedup_vs_baseline": baseline.median / self.median if baseline else None,
                "baseline": self.baseline, **self.extra}


def interleave(case: str, contenders: dict[str, Callable[[], None]], rounds: int, size_bytes: int | None = None,
               baseline: str | None = None, before_each: Callable[[str], None] | None = None) -> list[Row]:
    """Time each contender ``rounds`` times, interleaved; ``before_each(name)`` runs untimed before each call."""
    rows = {name: Row(case, name, size_bytes=size_bytes, baseline=name == baseline) for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            if before_each is not None:
                before_each(name)
            start = time.perf_counter()
            run()
            rows[name].seconds.append(time.perf_counter() - start)
    return list(rows.values())


def table(rows: list[Row]) -> str:
    """The human table: one line per contender, grouped by case."""
    lines = [f"{'case':<34} {'contender':<22} {'median':>9} {'min-max':>17} {'MB/s':>8} {'vs base':>8}  extra"]
    for row in rows:
        base = next((r for r in rows if r.case == row.case and r.baseline), None)
        ratio = f"{base.median / row.median:7.2f}x" if base else ""
        mbs = f"{row.throughput_mb_s:8.0f}" if row.throughput_mb_s else ""
        spread = f"{min(row.seconds):.3f}-{max(row.seconds):.3f}s"
        extra = ", ".join(f"{k}={v}" for k, v in row.extra.items())
        lines.append(f"{row.case:<34} {row.contender:<22} {row.median:8.3f}s {spread:>17} {mbs:>8} {ratio:>8}  {extra}")
    return "\n".join(lines)
