"""Reading a large ``hub.lock``: reprohub's ``Lockfile.read`` beside the standard library's TOML parse alone.

    python benchmarks/lock_read.py              # 100,000 entries (about 28 MB), three rounds
    python benchmarks/lock_read.py --entries 10000

The baseline, ``tomllib.loads`` of the same text, is what any reader of the file pays before it looks
at one entry; reprohub parses with tomli's compiled wheels and checks every entry once, so the ratio
says what the checks cost and whether the parser choice still pays.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from reprohub.lock.lockfile import ArtifactPin, GoldenPin, Lockfile


def big_lock(entries: int) -> Lockfile:
    """Half artifacts, half goldens, with real-looking URLs and digests."""
    lock = Lockfile()
    for i in range(entries // 2):
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        url = f"https://download.example.org/models/v1/resnet-{i}/weights-{digest[:8]}.pth"
        lock.artifacts[url] = ArtifactPin(url, digest, 1000 + i)
        key = f"acme/models/resnet_{i}/test_models.test_resnet_{i}-cpu"
        lock.goldens[key] = GoldenPin(key, f"fixtures/goldens/{key}.safetensors", digest, "e4d53f58d1eeb230")
    return lock


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reprohub-lock-") as tmp:
        path = Path(tmp) / "hub.lock"
        big_lock(args.entries).write(path)
        text = path.read_text()
        times: dict[str, list[float]] = {"Lockfile.read (reprohub)": [], "tomllib.loads alone": []}
        for _ in range(args.rounds):  # interleaved, so both meet the same machine
            for name, run in (("Lockfile.read (reprohub)", lambda: Lockfile.read(path)),
                              ("tomllib.loads alone", lambda: tomllib.loads(text))):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    print(f"reading a lock of {args.entries} entries ({len(text) / 1e6:.1f} MB), median of {args.rounds}:")
    for name, seconds in times.items():
        print(f"  {name:<26} {statistics.median(seconds):6.2f} s")
    ratio = statistics.median(times["Lockfile.read (reprohub)"]) / statistics.median(times["tomllib.loads alone"])
    print(f"  ratio {ratio:.2f}x the time of the parse alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
