"""Interleaved timing and the result table: the parts every benchmark case shares.

Each case runs its contenders round-robin (A B C A B C ...) so drift on a noisy
machine hits them alike, and reports medians, the min-max spread, throughput
and the speed ratio against the case's baseline, all from the same run.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
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


MAX_ROUNDS = 400


def child_env(work: Path, **extra: str) -> dict:
    """The environment of a benchmark's child processes: bytecode cached in a private folder (filled by each
    case's first, untimed run), as an installed package's ``.pyc`` files are.  Under ``PYTHONDONTWRITEBYTECODE``
    (set on these machines) an editable checkout would otherwise compile reprohub's source in every child,
    which its users never pay, while torch's installed bytecode is read as it is.

    Example:
        >>> env = child_env(Path("/tmp/w"), TORCH_HOME="/tmp/w/home")
        >>> "PYTHONDONTWRITEBYTECODE" in env, env["PYTHONPYCACHEPREFIX"], env["TORCH_HOME"]
        (False, '/tmp/w/pycache', '/tmp/w/home')
    """
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env.update(PYTHONPYCACHEPREFIX=str(work / "pycache"), **extra)
    return env


def interleave(case: str, contenders: dict[str, Callable[[], None]], rounds: int, size_bytes: int | None = None,
               baseline: str | None = None, before_each: Callable[[str], None] | None = None,
               budget_s: float = 0.0) -> list[Row]:
    """Time each contender ``rounds`` times, interleaved; ``before_each(name)`` runs untimed before each call.

    ``budget_s``: keep adding rounds (up to ``MAX_ROUNDS``) until the timed calls took that long, so a case of
    a few milliseconds gets a median of hundreds of runs, not of five.
    """
    rows = {name: Row(case, name, size_bytes=size_bytes, baseline=name == baseline) for name in contenders}
    done = 0
    while done < rounds or (done < MAX_ROUNDS and sum(sum(r.seconds) for r in rows.values()) < budget_s):
        done += 1
        for name, run in contenders.items():
            if before_each is not None:
                before_each(name)
            start = time.perf_counter()
            run()
            rows[name].seconds.append(time.perf_counter() - start)
    return list(rows.values())


def table(rows: list[Row]) -> str:
    """The human table: one line per contender, grouped by case."""
    lines = [f"{'case':<34} {'contender':<22} {'median':>9} {'min-max':>19} {'runs':>5} {'MB/s':>8} {'vs base':>8}  extra"]
    for row in rows:
        base = next((r for r in rows if r.case == row.case and r.baseline), None)
        ratio = f"{base.median / row.median:7.2f}x" if base else ""
        mbs = f"{row.throughput_mb_s:8.0f}" if row.throughput_mb_s else ""
        spread = f"{_time(min(row.seconds))}-{_time(max(row.seconds))}"
        extra = ", ".join(f"{k}={v}" for k, v in row.extra.items())
        lines.append(f"{row.case:<34} {row.contender:<22} {_time(row.median):>9} {spread:>19} {len(row.seconds):>5} "
                     f"{mbs:>8} {ratio:>8}  {extra}")
    return "\n".join(lines)


def _time(seconds: float) -> str:
    """``0.0123`` -> ``12.30ms``, ``1.5`` -> ``1.500s``: milliseconds keep two decimals where they matter."""
    return f"{seconds * 1e3:.2f}ms" if seconds < 1 else f"{seconds:.3f}s"


def suite_main(doc: str, suite: "Callable[[Path, int, int], list[Row]]", argv=None) -> int:
    """The command line of a suite benchmark: ``--tests N --rounds R``, the rows printed as a table."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reprohub-bench-") as tmp:
        print(table(suite(Path(tmp), args.tests, args.rounds)))
    return 0


def print_rows_in_temp(prefix: str, make_rows: "Callable[[Path], list[Row]]") -> int:
    """The end of a single-case benchmark's ``main``: ``make_rows`` in a fresh temporary folder (removed after),
    the rows printed as a table; exit status 0."""
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        print(table(make_rows(work)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0
