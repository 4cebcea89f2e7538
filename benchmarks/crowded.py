"""What a download costs beside many files (issue 41, goal 2): ``download_url_to_file`` of 1 MiB into an empty
folder and into a folder of 10,000 files, reprohub and torch.hub side by side in one run.

A download used to list its destination folder (looking for dead partials), so its cost grew with what sits
beside it; now it looks up its own partial by name.  Target: the crowded folder within a few percent of the
empty one, and reprohub's ratio to torch.hub the same in both.

    python benchmarks/crowded.py --files 10000 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, interleave, print_rows_in_temp  # noqa: E402

MiB = 1 << 20


def crowded(work: Path, files: int, rounds: int, budget_s: float = 0.0) -> list[Row]:
    """Rows: 1 MiB into an empty folder and into one of ``files`` files, by reprohub and by torch.hub."""
    import torch.hub

    import reprohub
    from reprohub.testing.server import HubServer

    hub = reprohub.Hub(hub_dir=work / "bench-hub")
    empty, full = work / "empty", work / "crowded"
    empty.mkdir(parents=True, exist_ok=True)
    full.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        (full / f"sample-{n:05d}.jpg").write_bytes(b"")
    rows = []
    with HubServer() as server:
        url = server.add_file("w.bin", os.urandom(MiB))
        digest = hub.download_url_to_file(url, str(empty / "w.bin"), progress=False).sha256
        for name, folder in (("empty folder", empty), (f"folder of {files} files", full)):
            dst = folder / "w.bin"
            contenders = {
                "reprohub download_url_to_file": lambda: hub.download_url_to_file(url, str(dst), progress=False),
                "torch.hub (hash_prefix)": lambda: torch.hub.download_url_to_file(url, str(dst), digest[:10],
                                                                                  progress=False),
            }
            rows += interleave(f"1 MiB into an {name}" if name.startswith("empty") else f"1 MiB into a {name}",
                               contenders, rounds, MiB, baseline="torch.hub (hash_prefix)",
                               before_each=lambda _n: dst.unlink(missing_ok=True), budget_s=budget_s)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per contender, at least")
    args = parser.parse_args(argv)
    return print_rows_in_temp("reprohub-crowded-", lambda work: crowded(work, args.files, args.rounds, args.budget))


if __name__ == "__main__":
    sys.exit(main())
