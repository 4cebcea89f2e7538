"""A locked cold load against torch.hub's cold load, with every request a network round trip away (issue 20).

The model has two weight files (a backbone and a head, as detectors ship them).  The test host
(``reprohub serve --latency MS``, in its own process as a real host is) answers every request after
a fixed delay: 20 ms stands for a round trip to a real host, 0 ms for loopback.  Contenders, interleaved, each from an empty cache and with a
new connection, as on a fresh CI runner:

* ``torch.hub``: ``torch.hub.load`` -- the archive, then each weight file, one after another;
* ``reprohub locked``: ``Hub(pins=<the lock, check mode>).load`` -- nothing resolved (the commit is
  pinned), and the pinned weight downloads start while the archive downloads and extracts;
* ``reprohub locked, no prefetch``: the same with ``REPROHUB_PREFETCH=0``, what the overlap buys;
* ``reprohub locked, sha256 skipped``: a measurement, not a mode -- the hash of every byte replaced by a
  no-op (against a lock recorded the same way), so the row shows what hashing costs where the CPU, not
  the network, is what a load waits for.

Each row also reports the CPU time per load of this process and of the host's (``cpu_ms_client``,
``cpu_ms_host``; the host's from /proc, in 10 ms ticks, so meaningful over many runs only).

    python benchmarks/locked_cold.py --latency 20 0 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cases import sha256_skipped, torch_hub_pointed_at  # noqa: E402
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
        yield f"{url}/api", proc.pid
    finally:
        proc.terminate()
        proc.wait(30)


class _Counted:
    """Requests made by each contender: reprohub's adapter's ``send`` wrapped (a response hook would turn
    off reprohub's direct sends, transport.stream_get), torch.hub's urlopen wrapped."""

    def __init__(self) -> None:
        self.count = 0

    def adapter_of(self, session) -> None:
        adapter = session.get_adapter("http://")
        adapter.send = self.urlopen(adapter.send)

    def urlopen(self, original):
        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)
        return counted


def locked_cold(work: Path, latencies_ms: list[float], rounds: int, budget_s: float = 0.0) -> list[Row]:
    """Rows per latency: torch.hub (the baseline), reprohub locked, reprohub locked without prefetching, and
    reprohub locked with its sha256 skipped (what the hash costs), each with its CPU time and the host's."""
    import torch.hub

    from reprohub import Hub
    from reprohub.lock.session import LockSession

    files, rows = detector_files(work), []
    for latency in latencies_ms:
        with remote_host(files, latency) as (api, host_pid), torch_hub_pointed_at(type("Host", (), {"api_url": api})):
            caches, made = work / "locked-cold", {}
            locks = {hashed: _record(work, Hub, hashed) for hashed in (True, False)}

            def ours(name: str, prefetch: bool, hashed: bool = True):
                lock, lock_path = locks[hashed]

                def run():
                    hub = Hub(hub_dir=caches / "reprohub", pins=LockSession(lock, str(lock_path)))
                    hub.prefetcher.workers = hub.prefetcher.workers if prefetch else 0
                    counter = made[name] = _Counted()
                    counter.adapter_of(hub.downloader.session)
                    with contextlib.nullcontext() if hashed else sha256_skipped():
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

            cpu: dict[str, list[float]] = {}
            contenders = {name: _cpu_counted(cpu, name, run, host_pid) for name, run in (
                ("torch.hub", theirs), ("reprohub locked", ours("reprohub locked", True)),
                ("reprohub locked, no prefetch", ours("reprohub locked, no prefetch", False)),
                (UNHASHED, ours(UNHASHED, True, hashed=False)))}
            found = interleave(f"locked cold load, 2 weight files, {latency:g} ms round trip", contenders, rounds,
                               baseline="torch.hub", before_each=fresh, budget_s=budget_s)
            for row in found:
                client, host = (sum(x) / len(x) * 1e3 for x in zip(*cpu[row.contender]))
                row.extra.update(http_requests=made[row.contender].count, cpu_ms_client=round(client, 1),
                                 cpu_ms_host=round(host, 1))
            rows += found
    return rows


UNHASHED = "reprohub locked, sha256 skipped (measures the hash)"


def _record(work: Path, hub_class, hashed: bool):
    """Record the detector's lock against the running host (its port is in the lock); ``hashed=False``
    records it with the hash skipped, so the lock pins the stand-in digests the unhashed contender makes."""
    from reprohub.lock.lockfile import Lockfile
    from reprohub.lock.session import LockSession

    lock_path = work / f"detector{'' if hashed else '-unhashed'}.lock"
    recording = LockSession(Lockfile(), str(lock_path), update=True)
    hub = hub_class(hub_dir=work / "recording", pins=recording)
    hub.recorder.listeners.append(recording.observe)
    with contextlib.nullcontext() if hashed else sha256_skipped():
        hub.load("acme/detector:main", "detector", trust_repo=True, verbose=False)
    recording.result().write(lock_path)
    shutil.rmtree(work / "recording", ignore_errors=True)
    return Lockfile.read(lock_path), lock_path


def _cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of this process, or of process ``pid`` (from /proc, in ticks)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # no /proc (macOS): the host's share is not measured
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_counted(cpu: dict[str, list[float]], name: str, run, host_pid: int):
    """``run``, adding the CPU seconds it cost this process and the host's process to ``cpu[name]``.

    The bound at 0 ms: on a machine with C cores a load cannot take less wall time than (client CPU + host
    CPU) / C, so where reprohub's CPU alone (it hashes every byte; torch.hub hashes none) exceeds what C
    cores do in torch.hub's wall time, no overlap makes it faster.
    """
    def counted() -> None:
        client, host = _cpu_seconds(), _cpu_seconds(host_pid)
        run()
        cpu.setdefault(name, []).append((_cpu_seconds() - client, _cpu_seconds(host_pid) - host))
    return counted


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
