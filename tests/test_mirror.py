"""Bundles and mirrors: everything a lock pins comes back from a static copy, verified, with no origin."""

import functools
import json
import subprocess
import sys
import textwrap
import threading
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import pytest
import torch

from reprohub import Hub
from reprohub.cli import EXIT_MISMATCH, EXIT_OK, main
from reprohub.errors import MirrorError, OfflineError
from reprohub.lock.lockfile import Lockfile
from reprohub.lock.mirror import artifact_item, tree_item
from reprohub.lock.session import LockSession

from reprohub.testing.server import Fault, QuietHTTPServer

from .conftest import FAST_POLICY


class StaticServer:
    """``python -m http.server -d DIR`` in a thread (the same handler), counting requests; or HTML for everything."""

    def __init__(self, folder: Path, html_for_everything: bool = False) -> None:
        self.paths: list[str] = []
        self.gets: list[str] = []  # the paths whose body was asked for (a GET, not a HEAD)
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self, head: bool = False):
                outer.paths.append(self.path)
                if not head:
                    outer.gets.append(self.path)
                if html_for_everything:  # a captive portal or a misconfigured bucket: 200 and a web page
                    body = b"<html><body>Sign in to continue</body></html>"
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not head:
                        self.wfile.write(body)
                    return
                super().do_HEAD() if head else super().do_GET()

            def do_HEAD(self):
                self.do_GET(head=True)

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def static():
    servers = []

    def start(folder, **kwargs):
        servers.append(StaticServer(folder, **kwargs))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def locked(tmp_path, server, tiny_repo, weights_url, monkeypatch):
    """A lock recorded online (repo acme/tiny:main + its weights) and a bundle written from it."""
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    lock_path = tmp_path / "hub.lock"
    session = LockSession(Lockfile(), str(lock_path), update=True)
    hub = Hub(pins=session, policy=FAST_POLICY)
    hub.recorder.listeners.append(session.observe)
    expected = load_output(hub)
    session.result().write(lock_path)
    assert main(["bundle", "--lock", str(lock_path), str(tmp_path / "bundle")]) == EXIT_OK
    return {"lock": lock_path, "bundle": tmp_path / "bundle", "expected": expected,
            "session": lambda: LockSession(Lockfile.read(lock_path), str(lock_path))}


def cold_hub(tmp_path, name: str, mirrors, locked, **kwargs) -> Hub:
    return Hub(hub_dir=tmp_path / name, pins=locked["session"](), mirrors=mirrors, policy=FAST_POLICY, **kwargs)


def load_output(hub: Hub):
    return hub.load("acme/tiny:main", "tiny_mlp", pretrained=True)(torch.ones(1, 3)).detach()


def test_bundle_layout_is_content_addressed_and_deterministic(locked, tmp_path):
    lock = Lockfile.read(locked["lock"])
    (pin,) = lock.repos.values()
    (art,) = lock.artifacts.values()
    bundle = locked["bundle"]
    assert (bundle / tree_item(pin.tree_sha256)).is_file() and (bundle / artifact_item(art.sha256)).is_file()
    assert main(["bundle", "--lock", str(locked["lock"]), str(tmp_path / "again")]) == EXIT_OK
    files = sorted(p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*") if p.is_file())
    assert all((bundle / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)


@pytest.mark.parametrize("kind", ["path", "file-url"])
def test_cold_cache_loads_from_a_local_bundle_with_the_origin_gone(kind, locked, server, tmp_path):
    server.stop()
    mirror = str(locked["bundle"]) if kind == "path" else locked["bundle"].as_uri()
    hub = cold_hub(tmp_path, "fresh", mirror, locked)
    assert torch.equal(load_output(hub), locked["expected"])


def test_http_mirror_serves_everything_and_the_origin_sees_nothing(locked, server, static, tmp_path):
    mirror = static(locked["bundle"])
    before = len(server.requests)
    hub = cold_hub(tmp_path, "fresh", mirror.url, locked)
    assert torch.equal(load_output(hub), locked["expected"])
    assert len(server.requests) == before
    assert len(mirror.paths) == 2  # one repo zip, one artifact


def test_tampered_blob_is_refused_naming_the_mirror_and_never_cached(locked, tmp_path):
    art = next(iter(Lockfile.read(locked["lock"]).artifacts.values()))
    blob = locked["bundle"] / artifact_item(art.sha256)
    blob.write_bytes(b"\x00" + blob.read_bytes()[1:])
    hub = cold_hub(tmp_path, "fresh", str(locked["bundle"]), locked)
    with pytest.raises(MirrorError) as err:
        load_output(hub)
    assert locked["bundle"].as_uri() in str(err.value) and art.sha256 in err.value.expected
    assert not [p for p in (tmp_path / "fresh" / "checkpoints").rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_tampered_repo_zip_is_refused_and_nothing_is_extracted_into_the_cache(locked, tmp_path):
    pin = next(iter(Lockfile.read(locked["lock"]).repos.values()))
    other = tmp_path / "evil"
    (other / "tinynet").mkdir(parents=True)
    (other / "hubconf.py").write_text("def tiny_mlp(**kw):\n    raise SystemExit('evil code ran')\n")
    from reprohub.fetch.treefiles import write_tree_zip

    write_tree_zip(other, locked["bundle"] / tree_item(pin.tree_sha256))
    hub = cold_hub(tmp_path, "fresh", str(locked["bundle"]), locked)
    with pytest.raises(MirrorError) as err:
        load_output(hub)
    assert pin.tree_sha256 in err.value.expected
    assert not list((tmp_path / "fresh").rglob("hubconf.py"))


def test_mirror_that_answers_html_is_an_error_not_a_cache_entry(locked, static, tmp_path):
    portal = static(locked["bundle"], html_for_everything=True)
    hub = cold_hub(tmp_path, "fresh", portal.url, locked)
    with pytest.raises(MirrorError, match=portal.url):
        load_output(hub)


def empty_bundle(tmp_path):
    """A bundle of a lock that pins nothing: a bundle folder that lacks every item."""
    from reprohub.lock.bundle import bundle_index
    from reprohub.lock.mirror import INDEX

    folder = tmp_path / "empty"
    folder.mkdir(exist_ok=True)
    (folder / INDEX).write_bytes(bundle_index(Lockfile()))
    return folder


def test_missing_items_fall_through_to_the_next_mirror_then_the_origin(locked, server, tmp_path):
    lock = Lockfile.read(locked["lock"])
    art = next(iter(lock.artifacts.values()))
    partial = tmp_path / "partial"  # an older or partial bundle: the repo only, plus an unrelated extra file
    main(["bundle", "--lock", str(locked["lock"]), str(partial)])
    (partial / artifact_item(art.sha256)).unlink()
    (partial / "notes.txt").write_text("extra files are ignored")
    before = len(server.requests)
    hub = cold_hub(tmp_path, "two", [str(empty_bundle(tmp_path)), str(partial), str(locked["bundle"])], locked)
    assert torch.equal(load_output(hub), locked["expected"])
    assert len(server.requests) == before  # the third mirror had the artifact
    hub = cold_hub(tmp_path, "origin", [str(partial)], locked)
    assert torch.equal(load_output(hub), locked["expected"])
    assert [p for _, p, _ in server.requests[before:]] == ["/files/tiny-weights.pt"]  # only what no mirror had


def test_unreachable_and_failing_mirrors_fall_through_to_the_origin(locked, server, tmp_path, caplog):
    dead = "http://127.0.0.1:9"  # nothing listens on the discard port here
    tree = tree_item(next(iter(Lockfile.read(locked["lock"]).repos.values())).tree_sha256)
    server.inject("/boom/" + tree, *[Fault("status", 503)] * 6)  # a mirror that keeps failing
    hub = cold_hub(tmp_path, "fresh", [dead, server.url + "/boom"], locked)
    assert torch.equal(load_output(hub), locked["expected"])
    assert "not asking it again" in caplog.text and dead in caplog.text


def test_offline_uses_local_mirrors_and_names_what_is_missing(locked, tmp_path):
    hub = cold_hub(tmp_path, "fresh", str(locked["bundle"]), locked, offline=True)
    assert torch.equal(load_output(hub), locked["expected"])
    hub = cold_hub(tmp_path, "nothing", str(empty_bundle(tmp_path)), locked, offline=True)
    with pytest.raises(OfflineError, match="not in the mirrors"):
        load_output(hub)


def test_fetch_from_a_bundle_fills_the_cache_without_the_origin_then_offline_works(locked, server, tmp_path,
                                                                                    monkeypatch, capsys):
    server.stop()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "air-gapped"))
    assert main(["fetch", "--lock", str(locked["lock"]), "--from", str(locked["bundle"])]) == EXIT_OK
    assert "ok" in capsys.readouterr().out
    assert main(["verify", "--lock", str(locked["lock"])]) == EXIT_OK
    hub = Hub(pins=locked["session"](), offline=True, mirrors=[])
    assert torch.equal(load_output(hub), locked["expected"])


def test_fetch_from_a_bundle_that_lacks_an_entry_never_asks_the_origin(locked, server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "air-gapped"))
    before = len(server.requests)
    assert main(["fetch", "--lock", str(locked["lock"]), "--from", str(empty_bundle(tmp_path))]) == 3
    assert "not in the mirrors" in capsys.readouterr().err
    assert len(server.requests) == before


def test_verify_bundle_reports_missing_and_tampered_files(locked, capsys):
    lock = Lockfile.read(locked["lock"])
    assert main(["verify", "--lock", str(locked["lock"]), "--bundle", str(locked["bundle"])]) == EXIT_OK
    art = next(iter(lock.artifacts.values()))
    (locked["bundle"] / artifact_item(art.sha256)).write_bytes(b"tampered")
    (locked["bundle"] / tree_item(next(iter(lock.repos.values())).tree_sha256)).unlink()
    capsys.readouterr()
    assert main(["verify", "--lock", str(locked["lock"]), "--bundle", str(locked["bundle"])]) == EXIT_MISMATCH
    out = capsys.readouterr().out
    assert "MISSING in bundle repo acme/tiny:main" in out and f"MISMATCH in bundle artifact {art.url}" in out


FLEET_NODE = textwrap.dedent("""
    import sys, torch
    from reprohub import Hub
    from reprohub.lock import Lockfile
    from reprohub.lock.session import LockSession
    hub_dir, lock, mirror = sys.argv[1:4]
    hub = Hub(hub_dir=hub_dir, pins=LockSession(Lockfile.read(lock), lock), mirrors=mirror)
    print(float(hub.load("acme/tiny:main", "tiny_mlp", pretrained=True)(torch.ones(1, 3)).detach().sum()))
""")


@pytest.mark.slow
def test_four_nodes_with_their_own_caches_behind_one_mirror_never_touch_the_origin(locked, server, static, tmp_path):
    mirror = static(locked["bundle"])
    before = len(server.requests)
    nodes = [subprocess.Popen([sys.executable, "-c", FLEET_NODE, str(tmp_path / f"node{i}"), str(locked["lock"]),
                               mirror.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    results = [node.communicate(timeout=120) for node in nodes]
    assert all(node.returncode == 0 for node in nodes), [err for _, err in results]
    assert {float(out) for out, _ in results} == {float(locked["expected"].sum())}
    assert len(server.requests) == before
    assert len(mirror.paths) == 8  # each node: one repo zip and one artifact


# -- reprohub mirror check ------------------------------------------------------------------------------

def _mirror_check(capsys, location, lock, *extra) -> "tuple[int, dict]":
    code = main(["mirror", "check", str(location), "--lock", str(lock), "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def test_mirror_check_passes_a_complete_bundle_and_names_what_a_partial_one_lacks(locked, capsys):
    code, found = _mirror_check(capsys, locked["bundle"], locked["lock"])
    assert code == EXIT_OK and found["complete"] and found["checked"] == 2 and found["problems"] == []
    lock = Lockfile.read(locked["lock"])
    (art,) = lock.artifacts.values()
    blob = locked["bundle"] / artifact_item(art.sha256)
    data = bytearray(blob.read_bytes())
    data[0] ^= 1
    blob.write_bytes(bytes(data))  # the right size, the wrong bytes: only --deep sees it
    assert _mirror_check(capsys, locked["bundle"], locked["lock"])[0] == EXIT_OK
    code, found = _mirror_check(capsys, locked["bundle"], locked["lock"], "--deep")
    assert code == 1 and found["problems"] == [f"{artifact_item(art.sha256)} (weights {art.url}): its bytes do not "
                                               "have the pinned digest"]
    blob.unlink()
    code, found = _mirror_check(capsys, locked["bundle"], locked["lock"])
    assert code == 1 and found["problems"] == [f"{artifact_item(art.sha256)} (weights {art.url}): missing"]


def test_mirror_check_over_http_sizes_by_head_and_says_whether_range_is_served(locked, static, capsys):
    host = static(locked["bundle"])
    code, found = _mirror_check(capsys, host.url, locked["lock"])
    assert code == EXIT_OK and found["complete"] and found["ranges"] is False  # http.server ignores Range
    assert len(host.gets) == 1 and "/artifacts/" in host.gets[0]  # HEADs, and one GET of bytes=0-0 for Range
    code, found = _mirror_check(capsys, host.url, locked["lock"], "--deep")
    assert code == EXIT_OK
    main(["mirror", "check", host.url, "--lock", str(locked["lock"])])
    assert "does not serve Range (an interrupted download starts over)" in capsys.readouterr().out


def test_mirror_check_catches_a_host_that_answers_200_with_html_for_everything(locked, static, capsys):
    host = static(locked["bundle"], html_for_everything=True)
    code, found = _mirror_check(capsys, host.url, locked["lock"])
    assert code == 1 and not found["complete"]
    assert any("an HTML page, not the file" in problem for problem in found["problems"])
    assert any("answers 200 for a file no bundle holds" in note for note in found["notes"])
