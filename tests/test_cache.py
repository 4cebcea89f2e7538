"""The artifact cache: keyed paths, sidecars, corruption, many processes, SIGKILL."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from reprohub import Hub
from reprohub.cache.store import RECORD_ATTRIBUTE, cached_digest, read_file_record, sidecar_path
from reprohub.errors import CacheCollisionError, HashMismatchError, OfflineError
from reprohub.testing.server import Fault

from .conftest import FAST_POLICY

BODY = os.urandom(2 << 20)
DIGEST = hashlib.sha256(BODY).hexdigest()


def test_same_basename_from_two_urls_never_collides(server, hub):
    server.add_file("a/model.pt", b"first")
    server.add_file("b/model.pt", b"second")
    first = hub.fetch_artifact(server.file_url("a/model.pt"), progress=False)
    second = hub.fetch_artifact(server.file_url("b/model.pt"), progress=False)
    assert first.path != second.path and first.path.name == second.path.name == "model.pt"
    assert first.path.read_bytes() == b"first" and second.path.read_bytes() == b"second"


def test_explicit_model_dir_collision_is_an_error_not_the_wrong_file(server, hub, tmp_path):
    server.add_file("a/model.pt", b"first")
    server.add_file("b/model.pt", b"second")
    hub.fetch_artifact(server.file_url("a/model.pt"), model_dir=str(tmp_path / "m"), progress=False)
    with pytest.raises(CacheCollisionError, match="file_name"):
        hub.fetch_artifact(server.file_url("b/model.pt"), model_dir=str(tmp_path / "m"), progress=False)


def test_warm_hit_reads_nothing_and_requests_nothing(server, hub, monkeypatch):
    url = server.add_file("w.bin", BODY)
    got = hub.fetch_artifact(url, progress=False)
    assert got.sha256 == DIGEST
    import reprohub.cache.store as cache_module

    monkeypatch.setattr(cache_module, "sha256_file", lambda p: pytest.fail("a warm hit must not re-hash"))
    again = hub.fetch_artifact(url, progress=False)
    assert again.sha256 == DIGEST and server.hits("/files/w.bin") == 1


def test_corrupt_cached_file_is_detected_and_fetched_again(server, hub):
    url = server.add_file("w.bin", BODY)
    path = hub.fetch_artifact(url, progress=False).path
    with open(path, "r+b") as f:
        f.write(b"\x00garbage")
    got = hub.fetch_artifact(url, progress=False)
    assert got.sha256 == DIGEST and path.read_bytes() == BODY
    assert server.full_downloads("/files/w.bin") == 2


def test_file_without_a_record_is_rehashed_and_adopted(server, hub):
    url = server.add_file("w.bin", BODY)
    path = hub.fetch_artifact(url, progress=False).path
    os.removexattr(path, RECORD_ATTRIBUTE)
    assert read_file_record(path) is None
    assert cached_digest(path, url).sha256 == DIGEST
    assert read_file_record(path)["sha256"] == DIGEST and not sidecar_path(path).exists()


def test_where_files_keep_no_attributes_the_record_is_a_sidecar_file(server, hub, monkeypatch):
    import errno

    def unsupported(*args):
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)  # an NFS or FUSE mount without user attributes
    monkeypatch.setattr(os, "getxattr", unsupported)
    url = server.add_file("w.bin", BODY)
    path = hub.fetch_artifact(url, progress=False).path
    assert json.loads(sidecar_path(path).read_text())["sha256"] == DIGEST
    monkeypatch.setattr("reprohub.cache.store.sha256_file", lambda p: pytest.fail("a recorded file is not re-hashed"))
    assert hub.fetch_artifact(url, progress=False).sha256 == DIGEST and server.hits("/files/w.bin") == 1


def test_pinned_digest_mismatch_keeps_the_cached_file(server, hub):
    url = server.add_file("w.bin", BODY)
    path = hub.fetch_artifact(url, progress=False).path

    class Pins:
        def pinned_commit(self, host, spec):
            return None

        def pinned_sha256(self, u):
            return "1" * 64

    hub.pins = Pins()
    with pytest.raises(HashMismatchError):
        hub.fetch_artifact(url, progress=False)
    assert path.read_bytes() == BODY


def test_offline_hit_works_and_miss_names_the_fix(server, tmp_path):
    url = server.add_file("w.bin", BODY)
    Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY).fetch_artifact(url, progress=False)
    offline = Hub(hub_dir=tmp_path / "hub", offline=True)
    assert offline.fetch_artifact(url, progress=False).sha256 == DIGEST
    with pytest.raises(OfflineError, match="reprohub fetch"):
        offline.fetch_artifact(server.file_url("other.bin"), progress=False)


WORKER = textwrap.dedent("""
    import sys, time, os
    from reprohub import Hub
    hub_dir, url, go = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.005)
    got = Hub(hub_dir=hub_dir).fetch_artifact(url, progress=False)
    print(got.sha256)
""")


def test_eight_processes_one_download(server, tmp_path):
    body = os.urandom(24 << 20)
    url = server.add_file("big.bin", body)
    server.inject("/files/big.bin", Fault("slow", after=4 << 20, delay=0.05))
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "hub"), url, str(go)],
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    time.sleep(0.5)
    go.touch()
    digests = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert digests == {hashlib.sha256(body).hexdigest()}
    assert server.full_downloads("/files/big.bin") == 1
    assert server.hits("/files/big.bin") == 1


def test_eight_threads_one_download_and_nothing_left_beside_the_file(server, tmp_path):
    """The partial file is the download's lock (no lock file): threads of one process exclude each other on it
    as processes do, and the folder ends with the file alone."""
    from concurrent.futures import ThreadPoolExecutor

    body = os.urandom(2 << 20)
    url = server.add_file("w.bin", body)
    server.inject("/files/w.bin", Fault("slow", after=256 << 10, delay=0.05))
    hub = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: hub.fetch_artifact(url, progress=False), range(8)))
    assert {g.sha256 for g in got} == {hashlib.sha256(body).hexdigest()} and server.hits("/files/w.bin") == 1
    assert [p.name for p in got[0].path.parent.iterdir()] == ["w.bin"]


LOADER = textwrap.dedent("""
    import sys, time, os
    import reprohub
    hub_dir, api, go = sys.argv[1:4]
    while not os.path.exists(go):
        time.sleep(0.005)
    hub = reprohub.Hub(hub_dir=hub_dir, github_api_url=api)
    print(hub.load("acme/tiny:main", "version", trust_repo=True))
""")


@pytest.mark.slow
def test_eight_cold_processes_resolve_and_fetch_a_repo_once(server, tiny_repo, tmp_path):
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", LOADER, str(tmp_path / "hub"), server.api_url, str(go)],
                              stdout=subprocess.PIPE, text=True) for _ in range(8)]
    time.sleep(0.5)
    go.touch()
    outputs = {p.communicate(timeout=120)[0].strip() for p in procs}
    assert outputs == {"v2"} and all(p.returncode == 0 for p in procs)
    assert server.hits("/acme/tiny/archive/main.zip") == 1  # one request resolved the branch and fetched it ...
    assert server.hits("/api/") == 0  # ... with no API call (the archive names its commit)


def test_sigkill_mid_download_leaves_nothing_trusted(server, tmp_path):
    body = os.urandom(16 << 20)
    url = server.add_file("big.bin", body)
    server.inject("/files/big.bin", Fault("slow", after=256 << 10, delay=0.05))
    go = tmp_path / "go"
    go.touch()
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "hub"), url, str(go)])
    hub = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY)
    target = hub.layout.artifact_path(url)
    partial = target.with_name(f".{target.name}.incomplete")
    deadline = time.time() + 30
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size >= 4 << 20):
        time.sleep(0.02)  # until the first 4 MiB buffer reached the disk
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftovers = _files(target.parent)
    assert any(p.name.endswith(".incomplete") for p in leftovers), "the test must kill it mid-download"
    assert not target.exists() and cached_digest(target, url) is None
    got = hub.fetch_artifact(url, progress=False)
    assert got.sha256 == hashlib.sha256(body).hexdigest() and target.read_bytes() == body
    ranges = [h["Range"] for _, path, h in server.requests if path == "/files/big.bin" and "Range" in h]
    assert len(ranges) == 1 and int(ranges[0].removeprefix("bytes=").rstrip("-")) > 0  # resumed, not restarted
    assert server.hits("/files/big.bin") == 2  # the killed transfer, then only the rest of the file
    assert not [p for p in _files(target.parent) if ".incomplete" in p.name]  # and nothing is left behind


def test_a_partial_of_another_url_or_without_a_validator_is_discarded(server, tmp_path):
    body = os.urandom(1 << 20)
    url = server.add_file("w.bin", body)
    hub = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY)
    target = hub.layout.artifact_path(url)
    target.parent.mkdir(parents=True)
    partial = target.with_name(f".{target.name}.incomplete")
    partial.write_bytes(b"junk from somewhere else")
    (target.parent / f".{target.name}.incomplete.json").write_text('{"url": "http://other/w.bin", "validator": "x"}')
    dead = target.with_name(f".{target.name}.999999999.0a1b2c3d4e5f.incomplete")  # a private partial of a dead pid
    dead.write_bytes(b"old")
    assert hub.fetch_artifact(url, progress=False).path.read_bytes() == body
    assert not any("Range" in h for _, _, h in server.requests)
    assert [p.name for p in _files(target.parent)] == [target.name]  # the partial was the lock: no lock file stays


def test_cache_prune_removes_stale_partials_and_keeps_live_ones(tmp_path, capsys, monkeypatch):
    from reprohub.cli import main
    from reprohub.fetch.locks import file_lock

    folder = tmp_path / "torch" / "hub" / "checkpoints" / "k"
    folder.mkdir(parents=True)
    stale = [folder / ".a.pt.incomplete", folder / ".a.pt.incomplete.json", folder / ".b.pt.999999999.abc.incomplete"]
    live = [folder / ".c.pt.incomplete", folder / f".d.pt.{os.getpid()}.abc.incomplete"]
    for path in stale + live:
        path.write_bytes(b"x")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with file_lock(folder / "c.pt.lock", "downloading c.pt"):  # c.pt is being downloaded right now by someone
        assert main(["cache", "prune"]) == 0
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in live)
    assert "3 entries removed" in capsys.readouterr().out


def _files(folder: Path) -> list:
    return list(folder.iterdir()) if folder.exists() else []


def test_a_symlinked_checkpoints_folder_keeps_working(tmp_path, server):
    from reprohub import Hub

    bigger_disk = tmp_path / "bigger-disk"
    bigger_disk.mkdir()
    (tmp_path / "hub").mkdir()
    (tmp_path / "hub" / "checkpoints").symlink_to(bigger_disk)
    url = server.add_file("w.bin", b"weights")
    got = Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url).fetch_artifact(url, progress=False)
    assert got.path.read_bytes() == b"weights" and bigger_disk in got.path.resolve().parents


def test_a_download_beside_many_files_never_lists_their_folder(server, tmp_path, monkeypatch):
    """Its cost must not grow with what sits beside it (benchmarks/crowded.py measures it): the partial is looked
    up by name; the folder is listed only where an interrupted download left one."""
    import os as _os

    url = server.add_file("w.bin", b"w" * 1000)
    folder = tmp_path / "samples"
    folder.mkdir()
    for n in range(50):
        (folder / f"img-{n}.jpg").write_bytes(b"")
    listed = []
    real = _os.scandir
    monkeypatch.setattr(_os, "scandir", lambda path=".": listed.append(str(path)) or real(path))
    hub = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY)
    hub.download_url_to_file(url, str(folder / "w.bin"), progress=False)
    assert str(folder) not in listed and (folder / "w.bin").read_bytes() == b"w" * 1000
    (folder / ".w.bin.incomplete").write_bytes(b"w" * 10)  # a killed download's partial: now it looks around
    (folder / "w.bin").unlink()
    hub.download_url_to_file(url, str(folder / "w.bin"), progress=False)
    assert str(folder) in listed and not (folder / ".w.bin.incomplete").exists()
