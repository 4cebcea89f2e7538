"""What reprohub calls verified cannot be fooled: each test is one attack or one piece of bad luck, against
real servers on 127.0.0.1, real files and real processes."""

import hashlib
import io
import json
import logging
import os
import pathlib  # noqa: F401  (annotations)
import zipfile

import pytest

from reprohub import Hub
from reprohub.cache.store import RECORD_ATTRIBUTE, sidecar_path
from reprohub.errors import CheckpointError, MirrorError, SourceError
from reprohub.fetch.download import Downloader
from reprohub.lock.lockfile import Lockfile, RepoPin
from reprohub.lock.session import LockSession
from reprohub.testing.server import Fault, HubServer

from .conftest import FAST_POLICY

MIB = 1 << 20


def ranged_requests(server, path):
    return [headers for method, p, headers in server.requests if p == path and "Range" in headers]


# -- wrong bytes trusted ----------------------------------------------------------------------------

def test_a_206_from_a_changed_file_is_not_spliced_onto_the_old_bytes(server, tmp_path):
    """The server ignores If-Range and answers the resume with a part of v2 (new ETag): start over."""
    v1, v2 = os.urandom(12 * MIB), os.urandom(12 * MIB)
    url = server.add_file("w.bin", v1)
    server.inject("/files/w.bin", Fault("truncate", after=5 * MIB), Fault("ignore_if_range"))
    swapped = []

    def upstream_changes_while_we_wait(seconds):
        if not swapped:
            server.add_file("w.bin", v2)
            swapped.append(True)

    got = Downloader(policy=FAST_POLICY, sleep=upstream_changes_while_we_wait).fetch(url, tmp_path / "w", progress=False)
    assert ranged_requests(server, "/files/w.bin"), "the download did try to resume"
    assert (tmp_path / "w").read_bytes() == v2 and got.sha256 == hashlib.sha256(v2).hexdigest()


DST_WORKER = """
import sys
from reprohub import Hub
hub_dir, url, go, dst = sys.argv[1:5]
Hub(hub_dir=hub_dir).download_url_to_file(url, dst, progress=False)
"""


def interrupt_mid_download(server, tmp_path, sig, dst=None) -> "tuple[str, bytes, pathlib.Path]":
    """A real process downloading a 16 MiB file, stopped by ``sig`` once 4 MiB of it reached its partial: into
    the cache, or with ``dst`` by ``download_url_to_file`` into that path."""
    import signal
    import subprocess
    import sys
    import time

    from .test_cache import WORKER

    body = os.urandom(16 * MIB)
    url = server.add_file("big.bin", body)
    server.inject("/files/big.bin", Fault("slow", after=256 << 10, delay=0.05))
    go = tmp_path / "go"
    go.touch()
    # a shell that runs jobs in the background (CI) starts them with SIGINT ignored, and a Python started
    # so never turns Ctrl-C into KeyboardInterrupt: give the child the terminal's default back
    worker = WORKER if dst is None else DST_WORKER
    proc = subprocess.Popen([sys.executable, "-c", worker, str(tmp_path / "hub"), url, str(go),
                             *([str(dst)] if dst is not None else [])],
                            stderr=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    target = Hub(hub_dir=tmp_path / "hub").layout.artifact_path(url) if dst is None else dst
    partial = target.with_name(f".{target.name}.incomplete")
    deadline = time.time() + 30
    while time.time() < deadline and not (partial.exists() and partial.stat().st_size >= 4 * MIB):
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(30)
    assert partial.exists(), "the process must be stopped mid-download, leaving its partial"
    return url, body, partial


def test_a_partial_from_an_earlier_boot_is_discarded_not_resumed(server, tmp_path, boot):
    """Killed mid-way (SIGKILL), then the power went: the partial's unflushed bytes read back as zeros."""
    import signal

    url, body, partial = interrupt_mid_download(server, tmp_path, signal.SIGKILL)
    st = partial.stat()
    partial.write_bytes(b"\0" * st.st_size)  # what a power loss can leave: the size, not the data
    os.utime(partial, ns=(st.st_atime_ns, st.st_mtime_ns))
    boot.id = "a-later-boot"  # the child wrote its resume record in this machine's real boot
    got = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY).fetch_artifact(url, progress=False)
    assert got.path.read_bytes() == body and got.sha256 == hashlib.sha256(body).hexdigest()
    assert ranged_requests(server, "/files/big.bin") == []  # never continued from the zeros


def test_ctrl_c_keeps_the_partial_and_the_rerun_resumes_it(server, tmp_path):
    import signal

    url, body, partial = interrupt_mid_download(server, tmp_path, signal.SIGINT)
    kept = partial.stat().st_size
    got = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY).fetch_artifact(url, progress=False)
    assert got.path.read_bytes() == body
    ranges = [h["Range"] for h in ranged_requests(server, "/files/big.bin")]
    assert len(ranges) == 1 and int(ranges[0].removeprefix("bytes=").rstrip("-")) >= min(kept, 4 * MIB)


def test_a_login_page_is_not_kept_as_weights_and_a_fixed_host_is_asked_again(server, hub):
    import torch

    page = b"<!DOCTYPE html><html><title>Sign in</title></html>"
    url = server.add_file("resnet.pth", page)
    with pytest.raises(CheckpointError, match=r"resnet\.pth.*<!DOCTYPE html>.*HTML page") as info:
        hub.load_state_dict_from_url(url, progress=False)
    assert isinstance(info.value, __import__("pickle").UnpicklingError)  # torch.hub's except clauses still work
    assert not hub.layout.artifact_path(url).exists()  # not trusted from now on
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    server.add_file("resnet.pth", buf.getvalue())  # the host is fixed
    assert torch.equal(hub.load_state_dict_from_url(url, progress=False)["w"], torch.ones(2))


def test_weights_only_refusals_are_torch_s_own_error_and_keep_the_file(server, hub):
    import pickle

    import torch

    buf = io.BytesIO()
    import argparse

    torch.save({"w": torch.ones(2), "obj": argparse.Namespace(a=1)}, buf)  # a class weights_only refuses
    url = server.add_file("full.pt", buf.getvalue())
    with pytest.raises(pickle.UnpicklingError) as info:
        hub.load_state_dict_from_url(url, progress=False)
    assert not isinstance(info.value, CheckpointError) and hub.layout.artifact_path(url).exists()


def _legacy_checkpoint() -> bytes:
    import torch

    inner = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, inner, _use_new_zipfile_serialization=False)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("legacy.pth", inner.getvalue())
    return out.getvalue()


def _load_legacy(url, hub_dir, results):
    try:
        hub = Hub(hub_dir=hub_dir, policy=FAST_POLICY)
        results.put(float(hub.load_state_dict_from_url(url, progress=False)["w"].sum()))
    except BaseException as err:  # the parent reports it
        results.put(repr(err))


def test_a_legacy_zip_checkpoint_loads_in_six_processes_at_once(server, tmp_path):
    import multiprocessing

    url = server.add_file("legacy.zip", _legacy_checkpoint())
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_load_legacy, args=(url, str(tmp_path / "hub"), results)) for _ in range(6)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    assert got == [6.0] * 6


def test_a_half_extracted_legacy_file_never_breaks_later_loads(server, tmp_path):
    url = server.add_file("legacy.zip", _legacy_checkpoint())
    hub = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY)
    cached = hub.fetch_artifact(url, progress=False).path
    # a process killed while extracting leaves its temporary folder, never the target itself
    leftover = cached.parent / ".legacy.pth.12345.abc.incomplete"
    leftover.mkdir()
    (leftover / "legacy.pth").write_bytes(b"half")
    assert float(hub.load_state_dict_from_url(url, progress=False)["w"].sum()) == 6.0


def test_a_planted_partial_link_is_never_written_through(server, hub, boot, tmp_path):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"precious" * 1000)
    url = server.add_file("w.bin", os.urandom(12 * MIB))
    path = hub.layout.artifact_path(url)
    path.parent.mkdir(parents=True)
    partial = path.with_name(".w.bin.incomplete")
    os.symlink(outside, partial)
    etag = '"' + hashlib.sha256(server.state.files["w.bin"]).hexdigest()[:16] + '"'
    partial.with_name(partial.name + ".json").write_text(json.dumps({"url": url, "validator": etag, "boot_id": "boot-a"}))
    got = hub.fetch_artifact(url, progress=False)
    assert outside.read_bytes() == b"precious" * 1000 and got.path.read_bytes() == server.state.files["w.bin"]


def test_a_cached_commit_folder_replaced_by_a_link_runs_the_real_code(hub, tiny_repo, tmp_path):
    assert hub.load("acme/tiny:v1", "version") == "v1"
    folder = hub.last_repo.path
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "hubconf.py").write_text("def version():\n    return 'evil code ran'\n")
    import shutil

    shutil.rmtree(folder)
    os.symlink(evil, folder)
    fresh = Hub(hub_dir=hub.hub_dir, github_api_url=hub.github.url, policy=FAST_POLICY)
    assert fresh.load("acme/tiny:v1", "version") == "v1"
    assert not folder.is_symlink() and (evil / "hubconf.py").exists()  # removed, not followed


# -- secrets ----------------------------------------------------------------------------------------

def _lock_naming_host(tmp_path, spec, commit, host) -> str:
    lock = Lockfile({spec: RepoPin(spec, host, commit, "v2:" + "0" * 64)})
    path = tmp_path / "hub.lock"
    lock.write(path)
    return str(path)


def test_a_host_named_only_by_an_edited_lock_never_receives_the_token(server, tiny_repo, tmp_path, monkeypatch):
    from reprohub.cli import main

    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_of_ci")
    with HubServer() as attacker:  # a pull request edited the host of the pin to this one
        lock = _lock_naming_host(tmp_path, "acme/tiny:v1", tiny_repo.v1, attacker.api_url)
        assert main(["fetch", "--lock", lock]) != 0
        assert attacker.requests, "the lock's host was asked"
        assert not any("Authorization" in headers for _, _, headers in attacker.requests)


def test_the_configured_host_wins_over_the_lock_and_gets_the_token(server, tiny_repo, tmp_path, monkeypatch, capsys):
    from reprohub.cli import main

    server.require_token("ghp_secret_of_ci")  # private: only the API route with the token answers
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_of_ci")
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    with HubServer() as other:
        lock = _lock_naming_host(tmp_path, "acme/tiny:v1", tiny_repo.v1, other.api_url)
        main(["fetch", "--lock", lock])
        assert other.requests == []
    assert any(h.get("Authorization") == "Bearer ghp_secret_of_ci" for _, _, h in server.requests)


def test_a_locked_load_without_an_api_setting_goes_to_the_host_the_lock_recorded(server, tiny_repo, tmp_path):
    spec = "acme/tiny:v1"
    recorder = Hub(hub_dir=tmp_path / "a", github_api_url=server.api_url, policy=FAST_POLICY)
    resolved = recorder.resolve(spec, verbose=False)
    lock = Lockfile({spec: RepoPin(spec, server.api_url, resolved.commit, resolved.tree_sha256)})
    hub = Hub(hub_dir=tmp_path / "b", pins=LockSession(lock, "hub.lock"), policy=FAST_POLICY)  # no API URL set
    assert hub.load(spec, "version") == "v1"


def test_mirror_passwords_are_never_shown(tmp_path, locked_bundle_lock, caplog, capsys):
    """A mirror URL with a password: the 503s are retried with warnings, then the mirror is given up and
    the fetch fails; none of the warnings, the error or the output shows the password."""
    from reprohub.cli import EXIT_ERROR, main

    with HubServer() as failing:  # answers 503 to everything it is asked
        item = next(iter(Lockfile.read(locked_bundle_lock).repos.values())).tree_sha256.removeprefix("v2:")
        failing.inject(f"/repos/tree-v2/{item}.zip", *[Fault("status", status=503)] * 8)
        base = failing.url.replace("http://", "http://mirror-user:hunter2@")
        caplog.set_level(logging.INFO, logger="reprohub")
        assert main(["fetch", "--lock", locked_bundle_lock, "--from", base]) == EXIT_ERROR
        assert failing.hits(f"/repos/tree-v2/{item}.zip") >= 2  # the mirror was really asked, and retried
    shown = caplog.text + "".join(capsys.readouterr())
    assert "http://***@127.0.0.1" in shown and "hunter2" not in shown and "mirror-user" not in shown


@pytest.fixture
def locked_bundle_lock(tmp_path, server, tiny_repo):
    hub = Hub(hub_dir=tmp_path / "rec", github_api_url=server.api_url, policy=FAST_POLICY)
    resolved = hub.resolve("acme/tiny:v1", verbose=False)
    path = tmp_path / "hub.lock"
    Lockfile({"acme/tiny:v1": RepoPin("acme/tiny:v1", server.api_url, resolved.commit, resolved.tree_sha256)}).write(path)
    return str(path)


def test_redaction_masks_userinfo_and_signatures_in_errors():
    err = MirrorError("sha256 x from the mirror http://u:p4ss@m.example/b", "found https://h/w.pt?X-Amz-Signature=s3cr3t")
    assert "p4ss" not in str(err) and "s3cr3t" not in str(err) and "m.example" in str(err)


# -- bad input that crashed ---------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", ["[1]", '"x"', '{"url": 5, "size": "big"}', "{not json"])
def test_records_of_the_wrong_shape_count_as_missing(hub, tiny_repo, weights_url, boot, garbage):
    assert hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True) is not None
    art = hub.layout.artifact_path(weights_url)
    repo = hub.last_repo
    from reprohub.refs import parse_ref

    records = [sidecar_path(art), hub.layout.repo_manifest("github", parse_ref("acme/tiny"), repo.commit),
               hub.layout.refs_file(hub.github.key, parse_ref("acme/tiny:v1"))]
    for record in records:
        record.write_text(garbage)
    os.setxattr(art, RECORD_ATTRIBUTE, garbage.encode() if isinstance(garbage, str) else garbage)  # the record itself
    partial = art.with_name("." + art.name + ".incomplete")  # a resume record too
    partial.write_bytes(b"x")
    partial.with_name(partial.name + ".json").write_text(garbage)
    fresh = Hub(hub_dir=hub.hub_dir, github_api_url=hub.github.url, policy=FAST_POLICY)
    assert fresh.load("acme/tiny:v1", "tiny_mlp", pretrained=True) is not None
    assert fresh.last_repo.commit == repo.commit


@pytest.mark.parametrize("answer,kind", [
    ("<html><body>Sign in to your proxy</body></html>", "JSON"),
    (json.dumps([1, 2]), "a JSON object"),
    (json.dumps({"sha": 5}), "a 40-hex commit"),
])
def test_an_api_host_answering_nonsense_is_a_source_error_naming_it(answer, kind):
    import responses

    from reprohub.refs import parse_ref
    from reprohub.sources.github import GitHubSource

    with responses.RequestsMock() as mock:
        mock.get("http://api.test/repos/acme/tiny/commits/abcdef1", body=answer, status=200)
        with pytest.raises(SourceError, match=f"{kind}.*api.test"):
            GitHubSource("http://api.test", downloader=Downloader(policy=FAST_POLICY)).resolve(parse_ref("acme/tiny:abcdef1"))


def test_a_branch_archive_cut_at_its_declared_length_is_an_archive_error_naming_its_url(server, tiny_repo, hub):
    from reprohub.errors import ArchiveError

    zip_bytes = hub.downloader.session.get(f"{server.url}/acme/tiny/archive/v1.zip").content
    with HubServer() as cut:
        cut.add_file("tiny.zip", zip_bytes[: len(zip_bytes) // 2])
        os.environ["REPROHUB_ARCHIVE_URL"] = cut.url + "/files/tiny.zip?{owner}{repo}{commit}"
        try:
            with pytest.raises(ArchiveError, match=r"archive of acme/tiny:v1 from http://127\.0\.0\.1:\d+/files/tiny"):
                hub.github.resolve_by_archive(__import__("reprohub.refs").refs.parse_ref("acme/tiny:v1"),
                                              hub.layout.root / "near", False)
        finally:
            del os.environ["REPROHUB_ARCHIVE_URL"]


def test_a_golden_file_replaced_by_garbage_is_named_and_replaced_on_update(tmp_path):
    import torch

    from reprohub.errors import GoldenFileError
    from reprohub.golden.store import GoldenStore

    GoldenStore(tmp_path / "g", tmp_path, update=True).check(torch.ones(3), "acme/tiny/m", {})
    golden = tmp_path / "g" / "acme" / "tiny" / "m.safetensors"
    golden.write_bytes(b"garbage that is no safetensors file")
    with pytest.raises(GoldenFileError, match=r"m\.safetensors.*re-record"):
        GoldenStore(tmp_path / "g", tmp_path).check(torch.ones(3), "acme/tiny/m", {})
    assert GoldenStore(tmp_path / "g", tmp_path, update=True).check(torch.ones(3), "acme/tiny/m", {}) == "updated"
    assert GoldenStore(tmp_path / "g", tmp_path).check(torch.ones(3), "acme/tiny/m", {}) == "matched"


def test_integers_are_compared_and_reported_exactly():
    import torch

    from reprohub.golden.engine import Golden, compare

    expected = torch.tensor([2**62, 5], dtype=torch.int64)
    obtained = expected.clone()
    obtained[0] += 1
    report = compare(obtained, Golden({"out": expected}, {})).message()
    assert "Greatest absolute difference: 1 at index (0,)" in report
    assert str(2**62 + 1)[:14] in report


# -- recorded entries lost -------------------------------------------------------------------------------

def test_each_worker_pins_the_bytes_it_produced_so_cross_worker_conflicts_show(tmp_path, monkeypatch):
    import torch

    from reprohub.golden import engine, store

    lock = Lockfile()
    workers = [LockSession(lock, "hub.lock", update=True) for _ in range(2)]
    real_save = engine.save_golden

    def save_then_the_other_worker_writes(path, output, meta):
        data = real_save(path, output, meta)
        real_save(path, output * 2, meta)  # worker 2's write lands before worker 1 pins its golden
        return data

    monkeypatch.setattr(store, "save_golden", save_then_the_other_worker_writes)
    workers[0].current_test = "t.py::test_a"
    store.GoldenStore(tmp_path / "g", tmp_path, workers[0], update=True).check(torch.ones(2), "k", {})
    monkeypatch.setattr(store, "save_golden", real_save)
    workers[1].current_test = "t.py::test_b"
    store.GoldenStore(tmp_path / "g", tmp_path, workers[1], update=True).check(torch.ones(2) * 2, "k", {})
    controller = LockSession(lock, "hub.lock", update=True)
    for worker in workers:
        controller.absorb(worker.export())
    assert controller.conflicts and "test_a and t.py::test_b wrote different outputs" in controller.conflicts[0]
