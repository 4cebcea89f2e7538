"""The small fixed costs behind the download and cold-load numbers, each beside its alternative.

    python benchmarks/fixed_costs.py            # about a minute (writes 1 GiB a few times)
    python benchmarks/fixed_costs.py --quick    # 128 MiB writes

Prints medians of interleaved runs: an inter-process lock (reprohub's flock against filelock, when
installed), one GET of a 2 MB file (requests, as reprohub sends it, against urllib, as torch.hub
does), one GET of a 1-byte file (requests' ``session.get`` against reprohub's ``stream_get`` and the short road of
:mod:`reprohub.fetch.direct`), four 2 MiB
downloads at once (hashed in their own threads against a helper thread each), creating an empty file on this disk, writing a
200 KiB partial into a new file, an emptied one (``O_TRUNC``) or an empty one as it is, and page-cache writes of
one large file in 64 KiB against 1 MiB pieces (what ``reprohub/fetch/pump.py`` chose).  Servers
run on 127.0.0.1 only; data goes to a temporary folder (``$REPROHUB_BENCH_TMP``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable

from reprohub.fetch.direct import DirectRoad
from reprohub.fetch.locks import file_lock
from reprohub.fetch.transport import new_session, open_body, stream_get
from reprohub.testing.server import HubServer

MiB = 1 << 20


def medians(contenders: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
    """Run the contenders interleaved ``rounds`` times; every timing in seconds, by name."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def report(title: str, times: dict[str, list[float]], unit: float, label: str) -> None:
    print(f"\n{title}")
    for name, seconds in times.items():
        print(f"  {name:<34} median {statistics.median(seconds) / unit:8.3f} {label}"
              f"   (min {min(seconds) / unit:.3f}, max {max(seconds) / unit:.3f})")


def locks(work: Path, rounds: int) -> None:
    target = work / "w.pt.lock"

    def flock_once() -> None:
        with file_lock(target, "benchmark"):
            pass

    contenders = {"reprohub file_lock (flock)": flock_once}
    try:
        from filelock import FileLock
    except ImportError:
        print("\nfilelock not installed: only reprohub's lock is timed")
    else:
        def filelock_once() -> None:
            with FileLock(str(target)):
                pass
        contenders["filelock.FileLock"] = filelock_once
    report("lock, acquire and release", medians(contenders, rounds), 1e-3, "ms")


def headers(work: Path, rounds: int) -> None:
    body = work / "two-mb.bin"
    body.write_bytes(os.urandom(2 * MiB))
    session = new_session()
    with HubServer() as server:
        url = server.add_file(body.name, body)

        def with_requests() -> None:
            with open_body(session, url, 0, None, {}, (10, 60)) as response:
                response.raw.read()

        def with_urllib() -> None:
            with urllib.request.urlopen(url) as response:
                response.read()

        report("one GET of a 2 MB file, body read, no hashing (requests keeps its connection, urllib does not)",
               medians({"requests (reprohub's transport)": with_requests, "urllib (torch.hub's)": with_urllib},
                       rounds), 1e-3, "ms")

        tiny = server.add_file("one-byte.bin", b"x")
        road = DirectRoad(session.verify)
        report("one GET of a 1-byte file: the per-request cost (a kept connection either way)",
               medians({"session.get (requests' merging)": lambda: _read_all(
                            session.get(tiny, headers={"Accept-Encoding": "identity"}, stream=True, timeout=(10, 60))),
                        "stream_get (reprohub's transport)": lambda: _read_all(stream_get(session, tiny, {}, (10, 60))),
                        "http.client, kept alive (fetch/direct.py, a plain GET's road)": lambda: _read_direct(
                            road.get(tiny, {"Accept-Encoding": "identity"}, (10, 60)))},
                       rounds * 4), 1e-3, "ms")


def _read_direct(response) -> None:
    buf = bytearray(1 << 16)
    while response.readinto(buf):
        pass
    response.release_conn()


def _read_all(response) -> None:
    with response:
        response.raw.read()


def file_creation(work: Path, rounds: int) -> None:
    folders = [work / "create" / f"d{i}" for i in range(40)]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    counter = iter(range(10 ** 9))

    def create_200() -> None:
        for _ in range(200):
            i = next(counter)
            os.close(os.open(folders[i % 40] / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))

    times = medians({"create 200 empty files": create_200}, rounds)
    report("creating files (per file)", {k: [s / 200 for s in v] for k, v in times.items()}, 1e-6, "us")


def truncated_partials(work: Path, rounds: int, files: int = 50, size: int = 200 << 10) -> None:
    """Write, close and rename ``files`` partials of 200 KiB: into new files, into existing empty ones opened with
    ``O_TRUNC`` (ext4 then flushes each on close: ``auto_da_alloc``) and into existing empty ones opened as they
    are (what a claimed partial is: ``reprohub/fetch/partial.py``)."""
    body = os.urandom(size)
    folder, counter = work / "partials", iter(range(10 ** 9))
    folder.mkdir(exist_ok=True)

    def writing(flags: int, existing: bool) -> Callable[[], None]:
        def run() -> None:
            names = [folder / f".p{next(counter)}" for _ in range(files)]
            if existing:
                for name in names:
                    os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644))
            start = time.perf_counter()
            for name in names:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | flags, 0o644)
                os.write(fd, body)
                os.close(fd)
                os.rename(name, name.with_name(name.name[1:]))
            run.seconds.append(time.perf_counter() - start)  # type: ignore[attr-defined]
        run.seconds = []  # type: ignore[attr-defined]
        return run

    runs = {"a new file": writing(os.O_EXCL, False), "an empty file, O_TRUNC": writing(os.O_TRUNC, True),
            "an empty file, as it is": writing(0, True)}
    medians(runs, rounds)  # each run times only the writes, not the files made empty before them
    report(f"writing a {size >> 10} KiB partial, closing and renaming it (per file)",
           {name: [t / files for t in run.seconds] for name, run in runs.items()}, 1e-6, "us")  # type: ignore


def writes(work: Path, size: int, rounds: int) -> None:
    block = bytearray(os.urandom(MiB))
    view = memoryview(block)
    path = work / "written.bin"

    def write_in(piece: int) -> Callable[[], None]:
        def run() -> None:
            path.unlink(missing_ok=True)
            os.sync()
            start = time.perf_counter()
            with open(path, "wb", buffering=0) as out:
                for _ in range(size // MiB):
                    for offset in range(0, MiB, piece):
                        out.write(view[offset:offset + piece])
            run.seconds.append(time.perf_counter() - start)  # type: ignore[attr-defined]
        run.seconds = []  # type: ignore[attr-defined]
        return run

    runs = {"64 KiB writes": write_in(64 << 10), "1 MiB writes": write_in(MiB)}
    medians(runs, rounds)  # each run times only its writes, not the unlink and sync before them
    report(f"writing {size // MiB} MiB into the page cache",
           {name: run.seconds for name, run in runs.items()}, 1, "s")  # type: ignore[attr-defined]
    path.unlink(missing_ok=True)


def concurrent_small(work: Path, rounds: int, files: int = 4, size: int = 2 * MiB) -> None:
    """``files`` downloads of ``size`` bytes at once, each in its own thread: hashed in that thread (what
    reprohub does while other bodies are in flight, ``pump.in_flight``) against a helper thread each
    (what a download alone gets)."""
    import contextlib
    import threading

    from reprohub.fetch import download, pump

    @contextlib.contextmanager
    def alone():  # every download believes it is the only one: a helper thread each
        yield 0

    fetcher = download.Downloader()
    with HubServer() as server:
        urls = [server.add_file(f"c{i}.bin", os.urandom(size)) for i in range(files)]

        def all_at_once(in_flight) -> Callable[[], None]:
            def run() -> None:
                pump.in_flight = in_flight
                try:
                    threads = [threading.Thread(target=fetcher.fetch, args=(url, work / f"c{i}.bin"),
                                                kwargs={"progress": False}) for i, url in enumerate(urls)]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                finally:
                    pump.in_flight = real
            return run

        real = pump.in_flight
        report(f"{files} downloads of {size // MiB} MiB at once, one thread each",
               medians({"hashed in their own threads (reprohub)": all_at_once(real),
                        "a helper thread each": all_at_once(alone)}, rounds), 1e-3, "ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="128 MiB writes instead of 1 GiB")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="reprohub-costs-", dir=os.environ.get("REPROHUB_BENCH_TMP")) as tmp:
        work = Path(tmp)
        locks(work, 300)
        headers(work, 60)
        concurrent_small(work, 60)
        file_creation(work, 10)
        truncated_partials(work, 15)
        writes(work, (128 if args.quick else 1024) * MiB, 3 if args.quick else 6)
    return 0


if __name__ == "__main__":
    sys.exit(main())
