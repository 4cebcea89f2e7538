"""A locked cold load against torch.hub's cold load, with every request a network round trip away (issue 20).

The model has two weight files (a backbone and a head, as detectors ship them).  The test host
(``reprohub serve --latency MS``, in its own process as a real host is) answers every request after
a fixed delay: 20 ms stands for a round trip to a real host, 0 ms for loopback.  Contenders, interleaved, each from an empty cache and with a
new connection, as on a fresh CI runner:

* ``torch.hub``: ``torch.hub.load`` -- the archive, then each weight file, one after another;
* ``reprohub locked``: ``Hub(pins=<the lock, check mode>).load`` -- nothing resolved (the commit is
  pinned), and the pinned weight downloads start while the archive downloads and extracts;
* ``reprohub locked, no prefetch``: the same with ``REPROHUB_PREFETCH=0``, what the overlap buys.

    python benchmarks/locked_cold.py --latency 20 0 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, interleave  # noqa: E402

HUBCONF = '''
import os
import torch

dependencies = ["torch"]


def detector():
    """A backbone and a head, each its own weight file."""
    backbone = torch.hub.load_state_dict_from_url(os.environ["BENCH_BACKBONE_URL"], progress=False)
    head = torch.hub.load_state_dict_from_url(os.environ["BENCH_HEAD_URL"], progress=False)
    return {**backbone, **head}
'''
SIZES = {"backbone": 6_000_000, "head": 1_500_000}  # bytes of float32 weights in each file


def detector_files(work: Path) -> dict[str, Path]:
    """The Git repo of acme/detector and its two weight files, written under ``work``."""
    import torch

    from reprohub.testing.gitrepo import GitRepo

    repo = GitRepo.init(work / "detector-repo")
    repo.commit({"hubconf.py": HUBCONF}, "detector")
    gen = torch.Generator().manual_seed(0)
    files = {"repo": repo.path}
    for name, size in SIZES.items():
        files[name] = work / f"{name}.pt"
        torch.save({f"{name}.weight": torch.randn(size // 4, generator=gen)}, files[name])
    return files


@contextlib.contextmanager
def remote_host(files: dict[str, Path], latency_ms: float):
    """``reprohub serve`` in its own process, as a real host is: its threads never share this process's
    interpreter lock, which a host serving three bodies at once in-process would make the client pay for."""
    args = [sys.executable, "-m", "reprohub", "serve", "--port", "0", "--latency", str(latency_ms),
            "--repo", f"acme/detector={files['repo']}"]
    args += [a for name in SIZES for a in ("--file", f"{name}.pt={files[name]}")]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split()[-1]  # "serving on http://127.0.0.1:PORT"
        for name in SIZES:
            os.environ[f"BENCH_{name.upper()}_URL"] = f"{url}/files/{name}.pt"
        os.environ["REPROHUB_GITHUB_API_URL"] = f"{url}/api"
        yield f"{url}/api"
    finally:
        proc.terminate()
        proc.wait(30)


class _Counted:
    """Requests made by each contender: reprohub's through a response hook, torch.hub's urlopen wrapped."""

    def __init__(self) -> None:
        self.count = 0

    def hook(self, response, *args, **kwargs):
        self.count += 1

    def urlopen(self, original):
        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)
        return counted


def locked_cold(work: Path, latencies_ms: list[float], rounds: int) -> list[Row]:
    """Rows per latency: torch.hub (the baseline), reprohub locked, and reprohub locked without prefetching."""
    import torch.hub

    from cases import torch_hub_pointed_at
    from reprohub import Hub
    from reprohub.lock.lockfile import Lockfile
    from reprohub.lock.session import LockSession

    files, rows = detector_files(work), []
    for latency in latencies_ms:
        with remote_host(files, latency) as api, torch_hub_pointed_at(type("Host", (), {"api_url": api})):
            lock_path = work / "detector.lock"
            recording = LockSession(Lockfile(), str(lock_path), update=True)
            hub = Hub(hub_dir=work / "recording", pins=recording)
            hub.recorder.listeners.append(recording.observe)
            hub.load("acme/detector:main", "detector", trust_repo=True, verbose=False)
            recording.result().write(lock_path)  # recorded against this host: its port is in the lock
            lock, caches, made = Lockfile.read(lock_path), work / "locked-cold", {}

            def ours(name: str, prefetch: bool):
                def run():
                    hub = Hub(hub_dir=caches / "reprohub", pins=LockSession(lock, str(lock_path)))
                    hub.prefetcher.workers = hub.prefetcher.workers if prefetch else 0
                    counter = made[name] = _Counted()
                    hub.downloader.session.hooks["response"].append(counter.hook)
                    hub.load("acme/detector:main", "detector", verbose=False)
                return run

            def theirs():
                torch.hub.set_dir(str(caches / "torch"))
                counter = made["torch.hub"] = _Counted()
                original, torch.hub.urlopen = torch.hub.urlopen, counter.urlopen(torch.hub.urlopen)
                try:
                    torch.hub.load("acme/detector:main", "detector", trust_repo=True, skip_validation=True,
                                   verbose=False)
                finally:
                    torch.hub.urlopen = original

            def fresh(_name: str) -> None:
                shutil.rmtree(caches, ignore_errors=True)
                shutil.rmtree(work / "recording", ignore_errors=True)
                os.sync()

            contenders = {"torch.hub": theirs, "reprohub locked": ours("reprohub locked", True),
                          "reprohub locked, no prefetch": ours("reprohub locked, no prefetch", False)}
            found = interleave(f"locked cold load, 2 weight files, {latency:g} ms round trip", contenders, rounds,
                               baseline="torch.hub", before_each=fresh)
            for row in found:
                row.extra["http_requests"] = made[row.contender].count
            rows += found
    return rows


def main(argv=None) -> int:
    import tempfile

    from harness import table

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, nargs="+", default=[20, 0], help="milliseconds per request")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    os.environ.setdefault("REPROHUB_TRUST", "all")
    with tempfile.TemporaryDirectory(prefix="reprohub-bench-") as tmp:
        os.environ["TORCH_HOME"] = str(Path(tmp) / "torch-home")
        print(table(locked_cold(Path(tmp), args.latency, args.rounds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
