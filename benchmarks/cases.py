"""The five benchmark cases, each run side by side with the tool people would otherwise use.

Every case builds its own data under ``work`` and talks only to servers on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

from harness import MAX_ROUNDS, Row, child_env, interleave

from reprohub.fetch.archive import extract_zip
from reprohub.testing.gitrepo import GitRepo
from reprohub.testing.server import HubServer

MiB = 1 << 20
HERE = Path(__file__).parent


def _big_file(path: Path, size: int) -> Path:
    block = os.urandom(16 * MiB)
    with open(path, "wb") as f:
        for offset in range(0, size, len(block)):
            f.write(block[: min(len(block), size - offset)])
    return path


def _cleanup(*paths: Path):
    """Untimed, before each run: remove the last output and flush the disk, so no contender pays for
    writeback of another's files (these machines' disks otherwise make ratios drift by 30%)."""
    def run(_name: str) -> None:
        for p in paths:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        os.sync()
    return run


# -- 1. downloads ------------------------------------------------------------------------------

def download(work: Path, sizes_mib: list[int], rounds: int, budget_s: float = 0.0) -> list[Row]:
    """One URL fetched by each contender; reprohub through a Hub made once, as the process-wide one is
    (its connection stays open between calls, as in any process that downloads more than once).
    Sizes up to 8 MiB run for ``budget_s`` seconds at least (their runs take milliseconds)."""
    import torch.hub

    import reprohub

    rows = []
    hub = reprohub.Hub(hub_dir=work / "bench-hub")
    with HubServer() as server:
        for size in sizes_mib:
            src = _big_file(work / f"src-{size}.bin", size * MiB)
            url = server.add_file(src.name, src)
            dst, cached = work / "dst.bin", work / "cache"
            digest = hub.download_url_to_file(url, str(dst), progress=False).sha256
            contenders = {
                # the path load_state_dict_from_url and hubconf weight loads take: cached, locked, recorded;
                # not flushed, the record names the boot instead (reprohub/fetch/durability.py)
                "reprohub cache path": lambda: hub.fetch_artifact(url, model_dir=str(cached), progress=False),
                "reprohub download_url_to_file": lambda: hub.download_url_to_file(url, str(dst), progress=False),
                "torch.hub (hash_prefix)": lambda: torch.hub.download_url_to_file(url, str(dst), digest[:10],
                                                                                  progress=False),
            }
            if size >= 64:  # what a flush of every download would cost (the design before boot ids)
                contenders["reprohub durable=True"] = lambda: hub.download_url_to_file(url, str(dst), progress=False,
                                                                                      durable=True)
            if shutil.which("curl"):
                contenders["curl (no hash)"] = lambda: subprocess.run(["curl", "-s", "-o", str(dst), url], check=True)
            data = src.read_bytes() if size <= 256 else None
            if data is not None:  # the ceiling for any loader that hashes: sha256 of bytes already in memory
                contenders["(ceiling: sha256 in memory)"] = lambda: hashlib.sha256(data).digest()
            rows += interleave(f"download {size} MiB", contenders, rounds, size * MiB,
                               baseline="torch.hub (hash_prefix)", before_each=_cleanup(dst, cached),
                               budget_s=budget_s if size <= 8 else 0.0)
            src.unlink()
    return rows


def download_breakdown(work: Path, size_mib: int, rounds: int, budget_s: float = 0.0) -> list[Row]:
    """Where the cache path's download of a small file spends its time (the stages inside
    ``fetch_artifact``), beside ``download_url_to_file`` of the same bytes: what the cache's bookkeeping
    for a new URL (its folder, lock and record) costs on top of the transfer."""
    import reprohub
    from reprohub.cache import store
    from reprohub.fetch import download as transfer

    hub = reprohub.Hub(hub_dir=work / "bench-hub")
    stages = [(reprohub.Hub, "fetch_artifact", "cache path: total"),
              (store.ArtifactStore, "ensure", "cache path: the store (lookups, folder, lock, record, transfer)"),
              (transfer.Downloader, "fetch", "cache path: the transfer (request, hashed body, partial, rename)"),
              (store, "write_sidecar", "cache path: the file's record (size, mtime, sha256)")]
    case, rows = f"download {size_mib} MiB stages", {}
    with HubServer() as server:
        src = _big_file(work / f"src-{size_mib}.bin", size_mib * MiB)
        url, cached, dst = server.add_file(src.name, src), work / "cache", work / "dst.bin"
        hub.download_url_to_file(url, str(dst), progress=False)  # the connection is open, as for the contenders
        done, spent_s = 0, 0.0
        while done < rounds or (done < MAX_ROUNDS and spent_s < budget_s):
            done += 1
            _cleanup(cached, dst)("")
            with _timing({}, *stages) as spent:
                hub.fetch_artifact(url, model_dir=str(cached), progress=False)
            _cleanup(cached, dst)("")
            with _timing(spent, (transfer.Downloader, "fetch", "download_url_to_file: the transfer")):
                hub.download_url_to_file(url, str(dst), progress=False)
            spent["cache path: lookups, folder and lock (the store less transfer and record)"] = (
                spent[stages[1][2]] - spent[stages[2][2]] - spent[stages[3][2]])
            spent_s += spent[stages[0][2]]
            for stage, seconds in spent.items():
                rows.setdefault(stage, Row(case, stage)).seconds.append(seconds)
        src.unlink()
    return list(rows.values())


# -- 2. extraction -----------------------------------------------------------------------------

def github_like_archive(path: Path, files: int, total_mib: int, compression: int) -> Path:
    """A zip laid out like GitHub's: one top folder, many small sources, a few large binaries."""
    rnd = random.Random(0)
    words = [f"token{i}" for i in range(500)]
    big = max(1, files // 200)
    big_size = int(total_mib * MiB * 0.7) // big
    small_size = max(256, int(total_mib * MiB * 0.3) // max(1, files - big))
    with zipfile.ZipFile(path, "w", compression) as zf:
        zf.writestr("acme-model-abc1234/", b"")
        for i in range(files - big):
            text = " ".join(rnd.choice(words) for _ in range(small_size // 7)).encode()[:small_size]
            zf.writestr(f"acme-model-abc1234/pkg{i % 40}/mod{i}.py", text)
        for i in range(big):
            zf.writestr(f"acme-model-abc1234/weights/part{i}.bin", os.urandom(big_size))
    return path


def extraction(work: Path, specs: list[tuple[str, int, int]], rounds: int) -> list[Row]:
    rows = []
    for label, files, total in specs:
        for kind, compression in (("deflated", zipfile.ZIP_DEFLATED), ("stored", zipfile.ZIP_STORED)):
            archive = github_like_archive(work / f"{label}-{kind}.zip", files, total, compression)
            out = work / "out"
            contenders = {
                "reprohub (safe+digest)": lambda: extract_zip(archive, out),
                "zipfile.extractall": lambda: zipfile.ZipFile(archive).extractall(out),
            }
            if shutil.which("unzip"):
                contenders["unzip -q"] = lambda: subprocess.run(["unzip", "-q", str(archive), "-d", str(out)],
                                                                check=True)
            with zipfile.ZipFile(archive) as zf:
                contents = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
            contenders["(floor: only write the files)"] = lambda: _write_all(out, contents)
            size = sum(len(b) for b in contents.values())
            rows += interleave(f"extract {label} ({files} files, {kind})", contenders, rounds, size,
                               baseline="zipfile.extractall", before_each=_cleanup(out))
            archive.unlink()
    return rows


def _write_all(out: Path, contents: dict[str, bytes]) -> None:
    """What any extractor must at least do here: create every folder and file and write its bytes."""
    for name, data in contents.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


# -- 3 and 4. cold and warm loads, many workers ----------------------------------------------------

HUBCONF = '''
import os
import torch

dependencies = ["torch"]


class Big(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(4))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def big(width={width}):
    """A model whose weights are about 100 MB, built on the meta device and loaded with assign=True."""
    with torch.device("meta"):
        model = Big(width)
    state = torch.hub.load_state_dict_from_url(os.environ["BENCH_WEIGHTS_URL"], progress=False)
    model.load_state_dict(state, assign=True)
    return model
'''


@contextlib.contextmanager
def model_host(work: Path, width: int):
    import torch

    repo = GitRepo.init(work / f"bench-repo-{width}")
    repo.commit({"hubconf.py": HUBCONF.format(width=width)}, "bench model")
    gen = torch.Generator().manual_seed(0)
    state = {f"layers.{i}.{n}": torch.randn(*(s), generator=gen) for i in range(4)
             for n, s in (("weight", (width, width)), ("bias", (width,)))}
    buf = io.BytesIO()
    torch.save(state, buf)
    with HubServer() as server:
        server.add_repo("acme/big", repo.path)
        url = server.add_file("big-weights.pt", buf.getvalue())
        os.environ["BENCH_WEIGHTS_URL"] = url
        os.environ["REPROHUB_GITHUB_API_URL"] = server.api_url
        yield server, len(buf.getvalue())


@contextlib.contextmanager
def torch_hub_pointed_at(server: HubServer):
    """torch.hub downloading repo archives from the test host's ``zipball`` route instead of github.com."""
    import torch.hub

    original_link = torch.hub._git_archive_link
    torch.hub._git_archive_link = lambda o, n, ref: f"{server.api_url}/repos/{o}/{n}/zipball/{ref}"
    try:
        yield
    finally:
        torch.hub._git_archive_link = original_link
        torch.hub._hub_dir = None


class _NoHash:
    """A sha256 stand-in that hashes nothing (for :func:`sha256_skipped` only)."""

    def update(self, data) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * 64


@contextlib.contextmanager
def sha256_skipped():
    """reprohub with its in-flight sha256 replaced by a no-op: a measurement of what hashing every byte
    costs a load (torch.hub hashes none without ``check_hash``), never a mode reprohub offers."""
    from reprohub.fetch import download, partial

    stand_in = types.SimpleNamespace(sha256=_NoHash)
    saved = download.hashlib, partial.hashlib
    download.hashlib = partial.hashlib = stand_in
    try:
        yield
    finally:
        download.hashlib, partial.hashlib = saved


UNHASHED = "reprohub, sha256 skipped (measures the hash)"


def cold_warm(work: Path, widths: list[int], rounds: int, budget_s: float = 0.0) -> list[Row]:
    rows = []
    for width in widths:
        rows += _cold_warm(work, width, rounds, budget_s)
    return rows


def _cold_warm(work: Path, width: int, rounds: int, budget_s: float) -> list[Row]:
    import torch.hub

    import reprohub

    rows = []
    with model_host(work, width) as (server, weight_bytes), torch_hub_pointed_at(server):
        try:
            for phase in ("cold", "warm"):
                requests: dict[str, list[int]] = {}

                def counted(name, fn):
                    def run():
                        before = len(server.requests)
                        fn()
                        requests.setdefault(name, []).append(len(server.requests) - before)
                    return run

                def fresh(name):
                    if phase == "cold":
                        shutil.rmtree(work / "caches", ignore_errors=True)
                    cache = work / "caches" / name.split()[0]
                    torch.hub.set_dir(str(cache / "torch"))
                    reprohub.set_dir(str(cache / "reprohub"))

                ours = counted("reprohub", lambda: reprohub.load("acme/big:main", "big", trust_repo=True))
                contenders = {"reprohub": ours}
                if phase == "cold":  # what the hash costs, shown beside it: the bound of the small cold load

                    def unhashed():
                        with sha256_skipped():
                            reprohub.load("acme/big:main", "big", trust_repo=True)
                    contenders[UNHASHED] = counted(UNHASHED, unhashed)
                theirs = counted("torch.hub", lambda: torch.hub.load("acme/big:main", "big", trust_repo=True,
                                                                     skip_validation=True))
                if phase == "warm":
                    fresh("reprohub")
                    ours()
                    fresh("torch.hub")
                    theirs()
                    requests.clear()
                found = interleave(f"{phase} load (~{_megabytes(weight_bytes)} MB weights)",
                                   {**contenders, "torch.hub": theirs}, rounds, baseline="torch.hub",
                                   before_each=fresh, budget_s=budget_s)
                for row in found:
                    row.extra["http_requests"] = max(requests[row.contender])
                rows += found
        finally:
            reprohub.set_dir(None)
    return rows


@contextlib.contextmanager
def _timing(spent: dict[str, float], *targets: tuple[object, str, str]):
    """Add the time spent in each ``(owner, attribute, label)`` callable to ``spent[label]`` while active."""
    originals = []
    for owner, name, label in targets:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def timed(*args, _original=original, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] = spent.get(_label, 0.0) + time.perf_counter() - start
        setattr(owner, name, timed)
    try:
        yield spent
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def cold_breakdown(work: Path, width: int, rounds: int, budget_s: float = 0.0) -> list[Row]:
    """Where a cold load of the small model spends its time, stage by stage, in reprohub and in torch.hub.

    Each stage is timed by wrapping the function that does it; "the rest" is the load minus the stages
    (importing hubconf.py, building the model, bookkeeping).  Rows are medians over ``rounds`` cold loads,
    or more, until the loads took ``budget_s`` seconds.
    """
    import torch
    import torch.hub

    import reprohub
    from reprohub.cache import store, weights
    from reprohub import hub as hub_module
    from reprohub.fetch import archive, locks
    from reprohub.sources import resolution, trust
    from reprohub.sources.github import GitHubSource

    # (owner, function, stage, counts toward "the rest"): the rest is the load minus the top-level stages
    ours = [(GitHubSource, "fetch_ref_archive", "repo: archive request + download (resolves the ref)", False),
            (archive, "extract_zip", "repo: safe extraction + tree digest", False),
            (trust, "check_trust", "repo: trust check (trusted_list)", False),
            (resolution, "atomic_write_json", "repo: the ref's record", False),
            (hub_module, "atomic_write_json", "repo: the tree's manifest", False),
            (store, "write_sidecar", "weights: the file's record", False),
            (os, "mkdir", "folders: os.mkdir, every call (the layout's depth)", False),
            (locks._Lock, "__init__", "locks: open (the repo's lock file; a weight's partial, created anyway)", False),
            (locks._Lock, "try_acquire", "locks: flock", False),
            (reprohub.Hub, "resolve", "repo total (with locks and records)", True),
            (store.ArtifactStore, "ensure", "weights: request + hashed download + record", True),
            (weights, "load_checkpoint", "weights: torch.load", True)]
    theirs = [(torch.hub, "_get_cache_or_reload", "repo total: zipball download + extractall", True),
              (torch.hub, "load_state_dict_from_url", "weights: download (not hashed) + torch.load", True),
              (torch, "load", "weights: torch.load", False),
              (os, "mkdir", "folders: os.mkdir, every call (the layout's depth)", False)]
    rows: dict[str, Row] = {}
    with model_host(work, width) as (server, weight_bytes), torch_hub_pointed_at(server):
        case = f"cold load stages (~{_megabytes(weight_bytes)} MB weights)"
        done, spent_s = 0, 0.0
        while done < rounds or (done < MAX_ROUNDS and spent_s < budget_s):
            done += 1
            for tool, stages, module, run in (
                    ("reprohub", ours, reprohub.Hub,
                     lambda: reprohub.load("acme/big:main", "big", trust_repo=True, verbose=False)),
                    ("torch.hub", theirs, torch.hub,
                     lambda: torch.hub.load("acme/big:main", "big", trust_repo=True, skip_validation=True,
                                            verbose=False))):
                shutil.rmtree(work / "caches", ignore_errors=True)
                torch.hub.set_dir(str(work / "caches" / "torch"))
                reprohub.set_dir(str(work / "caches" / "reprohub"))
                targets = [(owner, name, stage) for owner, name, stage, _ in stages] + [(module, "load", "load total")]
                with _timing({}, *targets) as spent:
                    run()
                spent_s += spent["load total"]
                top = sum(spent[stage] for _, _, stage, counted in stages if counted)
                spent["the rest: import hubconf, build the model, trust and bookkeeping"] = spent["load total"] - top
                for stage, seconds in spent.items():
                    rows.setdefault(tool + stage, Row(case, f"{tool}: {stage}")).seconds.append(seconds)
        reprohub.set_dir(None)
    return list(rows.values())


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.0f}" if n >= 10e6 else f"{n / 1e6:.1f}"


WORKER = """
import os, sys, time
import torch, reprohub
go, ready = sys.argv[1], sys.argv[2]
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
start = time.monotonic()
reprohub.load("acme/big:main", "big", trust_repo=True)
print(time.monotonic() - start, time.monotonic())
"""


def many_workers(work: Path, width: int, workers: int, rounds: int) -> list[Row]:
    """N processes load one cold entrypoint at once; wall = from the start signal until the last has its model.

    Every process imports torch before the signal, so the time measured is the load itself (downloads,
    locks, extraction, deserialization), not interpreter start-up or exit.
    """
    rows = {count: Row(f"cold load, {workers} processes vs 1", f"{count} process{'es' if count > 1 else ''}",
                       baseline=count == 1) for count in (1, workers)}
    with model_host(work, width) as (server, weight_bytes):
        for attempt, count in ((a, c) for a in range(rounds) for c in (1, workers)):
            cache, go = work / f"workers-{count}-{attempt}", work / f"go-{count}-{attempt}"
            env = child_env(work, TORCH_HOME=str(cache))
            readies = [work / f"ready-{count}-{attempt}-{i}" for i in range(count)]
            procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(go), str(r)], env=env, stdout=subprocess.PIPE,
                                      text=True) for r in readies]
            while not all(r.exists() for r in readies):
                time.sleep(0.01)
            time.sleep(0.2)
            before = server.full_downloads("/files/big-weights.pt")
            start = time.monotonic()
            go.touch()
            finished = [float(p.communicate(timeout=600)[0].split()[-1]) for p in procs]
            rows[count].seconds.append(max(finished) - start)
            downloads = server.full_downloads("/files/big-weights.pt") - before
            rows[count].extra["weight_downloads"] = max(rows[count].extra.get("weight_downloads", 0), downloads)
    return list(rows.values())


# -- 5. golden comparison ------------------------------------------------------------------------

def golden(size_mib: int, rounds: int) -> list[Row]:
    rows = []
    for contender in ("reprohub compare", "torch.testing.assert_close"):
        rows.append(Row(f"golden compare {size_mib} MiB float32", contender, baseline=contender.startswith("torch"),
                        size_bytes=size_mib * MiB))
    for _ in range(rounds):
        for row in rows:
            os.sync()
            out = subprocess.run([sys.executable, str(HERE / "golden_worker.py"), row.contender, str(size_mib)],
                                 capture_output=True, text=True, check=True).stdout.split()
            row.seconds.append(float(out[0]))
            row.extra["peak_extra_MiB"] = max(row.extra.get("peak_extra_MiB", 0), int(float(out[1])))
    return rows
