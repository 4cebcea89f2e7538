"""Run every reprohub benchmark side by side with what people would otherwise use.

    python benchmarks/run.py            # full sizes (several minutes)
    python benchmarks/run.py --quick    # small sizes, well under a minute (CI runs this)

Prints a table of medians, min-max spread, run count, throughput and the ratio
against each case's baseline (cases of a few milliseconds repeat until they took
3 s, so their medians are of hundreds of runs; contenders named "measures ..."
are measurements of one cost, such as the sha256, not modes); writes results.json (and download.png when matplotlib is
installed) to --out.  Servers run on 127.0.0.1 only; data is generated in a
temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cases  # noqa: E402
import ci_suite  # noqa: E402
import crowded  # noqa: E402
import hermetic  # noqa: E402
import imports  # noqa: E402
import locked_cold  # noqa: E402
import peers  # noqa: E402
import traced  # noqa: E402
from harness import table  # noqa: E402

FULL = dict(download=[1, 64, 256, 1024], extract=[("small", 300, 5), ("large", 2000, 200)], width=2500,
            load_widths=[350, 2500],
            workers=8, golden=1024, rounds=5, ci_tests=200, latencies=[20, 0], budget=3.0, crowded=10000, small_files=20,
            processes=15, image=160)
QUICK = dict(download=[1, 8], extract=[("small", 300, 5)], width=400, load_widths=[350], workers=3, golden=32,
             rounds=2, ci_tests=10, latencies=[20], budget=0.0, crowded=200, small_files=3, processes=2, image=32)
CASES = ("download", "crowded", "peers", "imports", "extract", "load", "workers", "golden", "ci", "hermetic", "locked", "traced")


def results_folder(out: str | None, quick: bool) -> Path:
    """Where results go: --out, else the committed full results, else (quick) a git-ignored folder."""
    return Path(out) if out else Path(__file__).parent / "results" / ("quick" if quick else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes; proves the harness runs")
    parser.add_argument("--out", default=None, help="folder for results.json and download.png (default: "
                        "benchmarks/results for full runs, benchmarks/results/quick for --quick, so a smoke run "
                        "never overwrites the committed full results)")
    parser.add_argument("--only", nargs="*", choices=CASES, help="run only these cases")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    wanted = set(args.only or CASES)
    rows = []
    with tempfile.TemporaryDirectory(prefix="reprohub-bench-", dir=os.environ.get("REPROHUB_BENCH_TMP")) as tmp:
        work = Path(tmp)
        os.environ["TORCH_HOME"] = str(work / "torch-home")
        os.environ["REPROHUB_TRUST"] = "all"
        steps = [
            ("download", lambda: cases.download(work, plan["download"], plan["rounds"], plan["budget"])
             + cases.download_breakdown(work, plan["download"][0], plan["rounds"], plan["budget"])),
            ("crowded", lambda: crowded.crowded(work / "crowded", plan["crowded"], plan["rounds"], plan["budget"])),
            ("peers", lambda: peers.peers(work / "peers", plan["rounds"], plan["budget"], plan["small_files"])),
            ("imports", lambda: imports.fresh_processes(work / "imports", plan["processes"])),
            ("extract", lambda: cases.extraction(work, plan["extract"], plan["rounds"])),
            ("load", lambda: cases.cold_warm(work, plan["load_widths"], plan["rounds"], plan["budget"])
             + cases.cold_breakdown(work, plan["load_widths"][0], plan["rounds"], plan["budget"])),
            ("workers", lambda: cases.many_workers(work, plan["width"], plan["workers"], max(1, plan["rounds"] - 2))),
            ("golden", lambda: cases.golden(plan["golden"], max(1, plan["rounds"] - 2))),
            ("ci", lambda: ci_suite.ci_suite(work, plan["ci_tests"], max(1, plan["rounds"] - 2))),
            ("hermetic", lambda: hermetic.hermetic_suite(work / "hermetic", plan["ci_tests"], max(1, plan["rounds"] - 2))),
            ("traced", lambda: traced.traced_cost(work / "traced", max(1, plan["rounds"] - 2), plan["image"])),
            ("locked", lambda: locked_cold.locked_cold(work, plan["latencies"], plan["rounds"] + 2, plan["budget"])),
        ]
        for name, step in steps:
            if name in wanted:
                print(f"running {name}...", file=sys.stderr, flush=True)
                rows += step()
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\nreprohub benchmarks ({'quick' if args.quick else 'full'}; {machine})\n")
    print(table(rows))
    out = results_folder(args.out, args.quick)
    out.mkdir(parents=True, exist_ok=True)
    results = [r.as_dict(next((b for b in rows if b.case == r.case and b.baseline), None)) for r in rows]
    (out / "results.json").write_text(json.dumps({"machine": machine, "quick": args.quick, "results": results},
                                                 indent=1))
    _plot(rows, out / "download.png")
    print(f"\nwrote {out / 'results.json'}")
    return 0


def _plot(rows, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", file=sys.stderr)
        return
    downloads = [r for r in rows if r.case.startswith("download") and r.size_bytes]  # not the stage rows
    if not downloads:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for contender in sorted({r.contender for r in downloads}):
        points = sorted((r.size_bytes / (1 << 20), r.throughput_mb_s) for r in downloads if r.contender == contender)
        ax.plot(*zip(*points), marker="o", label=contender)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("file size (MiB)")
    ax.set_ylabel("throughput (MB/s, median)")
    ax.set_title("Loopback download throughput")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
