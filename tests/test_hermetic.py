"""Hermetic locks: every request a locked test makes -- hub code, test code, any library -- is pinned,
replayed and fenced (reprohub.runtime.network, reprohub.lock.hermetic).

The repo below fetches the way popular hub repos do: yolov5 asks a release API with requests and
writes its weights into the working folder, once-for-all urlretrieves under ``~``, timm goes through
huggingface_hub's httpx (a redirect, a HEAD), silero downloads into its own folder, and the test
downloads its input image.  Two real hosts on 127.0.0.1 answer, one of them over TLS with a test CA."""

import io
import socket
import ssl

import pytest
import torch
import trustme
from hypothesis import given
from hypothesis import strategies as st

from reprohub.cli import EXIT_OK, main
from reprohub.lock.lockfile import Lockfile
from reprohub.testing.server import Fault, HubServer

from .conftest import run_locked, serve_repo, serving

HUBCONF = '''
dependencies = ["torch", "requests", "httpx"]

import os
import urllib.request
from pathlib import Path

import torch

API = "{tls}/files"  # a release API on a TLS host
FILES = "{plain}/files"


def _asset_url(tag):
    """yolov5's attempt_download: the release API names the asset to fetch."""
    import requests

    return requests.get(f"{{API}}/release-{{tag}}.json", timeout=10).json()["assets"][0]["browser_download_url"]


def detector(pretrained=True):
    """yolov5: weights written into the working folder, fetched with requests (and then kept)."""
    model = torch.nn.Linear(256, 128)
    weights = Path("detector.pt")
    if pretrained and not weights.exists():
        import requests

        response = requests.get(_asset_url("v1"), timeout=10)
        response.raise_for_status()
        weights.write_bytes(response.content)
    if pretrained:
        model.load_state_dict(torch.load(weights, weights_only=True))
    return model


def supernet():
    """once-for-all: urlretrieve into a folder under ~, skipped when the file is there."""
    target = Path(os.path.expanduser("~/.ofa/supernet.pth"))
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        urllib.request.urlretrieve(f"{{FILES}}/supernet.pth", target)
    return torch.load(target, weights_only=True)


def backbone():
    """timm through huggingface_hub: httpx, a redirect to the file's host, a HEAD for its size."""
    import httpx

    config = httpx.get(f"{{FILES}}/config.json", follow_redirects=True).json()
    size = httpx.head(f"{{API}}/model.bin").headers["content-length"]
    return config["width"], int(size)


def vad():
    """silero: a file downloaded into the repo's own folder."""
    target = Path(__file__).parent / "files" / "vad.jit"
    if not target.exists():
        target.parent.mkdir(exist_ok=True)
        urllib.request.urlretrieve(f"{{FILES}}/vad.jit", target)
    return target.read_bytes()
'''

TESTS = '''
import urllib.request

import torch


def test_detector(hub, golden):
    image = urllib.request.urlopen("{plain}/files/zidane.jpg").read()  # the usual sample-image download
    x = torch.tensor(list(image[:256]), dtype=torch.float32).reshape(1, 256) / 255
    model = hub.load("acme/fetchy:main", "detector").eval()
    with torch.no_grad():
        golden.check(model(x))


def test_the_other_habits(hub):
    assert hub.load("acme/fetchy:main", "supernet")["w"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert hub.load("acme/fetchy:main", "backbone") == (7, 300000)
    assert hub.load("acme/fetchy:main", "vad") == b"VAD model"
'''


def saved(obj, **kwargs) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def trusted_tls_context(tmp_path, monkeypatch) -> ssl.SSLContext:
    """A server TLS context whose certificate a test CA signed, that CA trusted for this test (SSL_CERT_FILE), as a
    machine's store trusts GitHub's."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "test-ca.pem"))
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "test-ca.pem"))
    return context


@pytest.fixture
def tls_host(tmp_path, monkeypatch):
    """A host over HTTPS, trusted as GitHub's is (:func:`trusted_tls_context`)."""
    with HubServer(tls=trusted_tls_context(tmp_path, monkeypatch)) as host:
        yield host


class Machine:
    """This machine's home, hub dir and working folder; :meth:`fresh` moves to a new, empty one (a reviewer's)."""

    def __init__(self, root, monkeypatch, workdir) -> None:
        self.root, self.monkeypatch, self.workdir, self.count = root, monkeypatch, workdir, 0

    def fresh(self) -> None:
        self.count += 1
        self.monkeypatch.setenv("HOME", str(self.root / f"machine{self.count}" / "home"))
        self.monkeypatch.setenv("TORCH_HOME", str(self.root / f"machine{self.count}" / "torch"))
        (self.workdir / "detector.pt").unlink(missing_ok=True)  # what the last run wrote into the working folder


def linear_weights() -> dict:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        return torch.nn.Linear(256, 128).state_dict()


WEIGHTS = linear_weights()


@pytest.fixture
def machine(pytester, tmp_path, monkeypatch) -> Machine:
    machine = Machine(tmp_path, monkeypatch, pytester.path)
    machine.fresh()
    return machine


@pytest.fixture
def project(pytester, server, tls_host, machine, tmp_path, monkeypatch):
    """A project whose tests use acme/fetchy, and the hosts serving what it fetches."""
    tls, plain = tls_host.url, server.url
    tls_host.add_file("release-v1.json", f'{{"assets": [{{"browser_download_url": "{tls}/files/detector-v1.pt", '
                                         '"download_count": 17}]}'.encode())
    tls_host.add_file("detector-v1.pt", saved(WEIGHTS))
    tls_host.add_file("model.bin", b"\0" * 300000)
    server.add_file("supernet.pth", saved({"w": torch.tensor([1.0, 2.0, 3.0, 4.0])}))
    server.add_file("cdn-config.json", b'{"width": 7}')
    server.inject("/files/config.json", *(Fault("redirect", status=302, location=f"{plain}/files/cdn-config.json")
                                          for _ in range(10)))  # a hub's file URL answers with its CDN's
    server.add_file("vad.jit", b"VAD model")
    server.add_file("zidane.jpg", bytes(range(256)) * 40)
    serve_repo(server, tmp_path, "acme/fetchy", {"hubconf.py": HUBCONF.format(tls=tls, plain=plain)})
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_fetchy=TESTS.format(plain=plain))
    return pytester


def requests_of(*hosts) -> int:
    return sum(len(host.requests) for host in hosts)


def test_a_locked_run_pins_every_fetch_and_a_reviewer_replays_it_with_the_origin_down(
        project, server, tls_host, machine, monkeypatch, tmp_path):
    recorded = run_locked(project, "--hub-update")
    recorded.assert_outcomes(passed=2)
    lock = Lockfile.read(project.path / "hub.lock")
    tls, plain = tls_host.url, server.url
    assert set(lock.requests) == {
        f"GET {tls}/files/release-v1.json", f"GET {tls}/files/detector-v1.pt", f"HEAD {tls}/files/model.bin",
        f"GET {plain}/files/supernet.pth", f"GET {plain}/files/config.json", f"GET {plain}/files/cdn-config.json",
        f"GET {plain}/files/vad.jit", f"GET {plain}/files/zidane.jpg"}
    redirect = lock.requests[f"GET {plain}/files/config.json"]
    assert (redirect.status, redirect.headers["location"], redirect.size) == (302, f"{plain}/files/cdn-config.json", 0)
    assert lock.requests[f"HEAD {tls}/files/model.bin"].headers["content-length"] == "300000"
    assert {pin.repo for pin in lock.requests.values()} == {"acme/fetchy:main", ""}  # "": the test's own fetch
    assert lock.requests[f"GET {plain}/files/zidane.jpg"].repo == ""
    # where each request came from is in the update report
    recorded.stdout.fnmatch_lines([f"  new request GET {plain}/files/zidane.jpg: HTTP 200, 10240 bytes "
                                   "(asked at test_fetchy.py:7)",
                                   f"  new request GET {tls}/files/release-v1.json: HTTP 200, * bytes "
                                   "(asked at acme/fetchy@*/hubconf.py:18)"])
    # small answers travel with the project, reviewable: the release JSON with its download count
    beside = sorted(p.name for p in (project.path / "hub-responses").iterdir())
    assert any(name.endswith(".json") for name in beside) and any(name.endswith(".jpg") for name in beside)
    assert not any(lock.requests[f"GET {tls}/files/detector-v1.pt"].sha256 in name for name in beside)  # 128 kB

    before = requests_of(server, tls_host)
    run_locked(project).assert_outcomes(passed=2)  # warm check
    run_locked(project, "--hub-offline").assert_outcomes(passed=2)
    assert requests_of(server, tls_host) == before, "a warm locked run asks no host"

    # files the repo wrote into its own folder, the working folder and ~ are no corruption
    assert main(["verify", "--lock", str(project.path / "hub.lock")]) == EXIT_OK
    assert main(["bundle", "--lock", str(project.path / "hub.lock"), str(tmp_path / "bundle")]) == EXIT_OK

    # a reviewer: a fresh machine, the origin down, the bundle as the mirror
    server.stop()
    tls_host.stop()
    tls_host.add_file("release-v1.json", b'{"assets": [], "download_count": 18}')  # volatile; never asked again
    machine.fresh()
    monkeypatch.setenv("REPROHUB_MIRROR", str(tmp_path / "bundle"))
    reviewed = run_locked(project)
    reviewed.assert_outcomes(passed=2)
    assert requests_of(server, tls_host) == before


def test_weights_re_saved_upstream_fail_a_check_on_a_fresh_machine_naming_the_url(project, tls_host, machine):
    run_locked(project, "--hub-update").assert_outcomes(passed=2)
    lock = Lockfile.read(project.path / "hub.lock")
    url = f"{tls_host.url}/files/detector-v1.pt"
    resaved = saved(WEIGHTS, _use_new_zipfile_serialization=False)  # the same tensors, other bytes
    loaded = torch.load(io.BytesIO(resaved), weights_only=True)
    assert all(torch.equal(loaded[k], WEIGHTS[k]) for k in WEIGHTS)  # the golden alone would pass
    tls_host.add_file("detector-v1.pt", resaved)
    machine.fresh()
    result = run_locked(project, "test_fetchy.py::test_detector")
    result.assert_outcomes(failed=1)
    import hashlib

    result.stdout.fnmatch_lines([f"*the pinned answer to GET {url}: HTTP 200, sha256 {lock.requests['GET ' + url].sha256}*"
                                 f"found HTTP 200, sha256 {hashlib.sha256(resaved).hexdigest()}*"])


SWALLOWED = '''
import urllib.request


def test_fetches_what_the_lock_does_not_pin(hub):
    try:  # repo code that catches everything and carries on (yolov5 falls back to curl)
        urllib.request.urlopen("{url}").read()
    except Exception:
        pass
'''


def test_an_unpinned_fetch_fails_the_test_naming_url_line_and_fix_even_when_caught(project, server):
    run_locked(project, "--hub-update").assert_outcomes(passed=2)
    url = server.add_file("new-input.png", b"png")
    project.makepyfile(test_extra=SWALLOWED.format(url=url))
    before = len(server.requests)
    result = run_locked(project, "test_extra.py")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"reprohub refused a request the lock does not pin: GET {url} "
                                 "(asked at test_extra.py:6). Fix: record it: pytest --hub-lock *hub.lock --hub-update*"])
    assert len(server.requests) == before  # refused, not sent
    run_locked(project, "--hub-update", "test_extra.py").assert_outcomes(passed=1)
    run_locked(project, "test_extra.py").assert_outcomes(passed=1)


def test_a_prune_on_a_warm_machine_keeps_what_the_repo_finds_on_disk(project, server, tls_host):
    run_locked(project, "--hub-update").assert_outcomes(passed=2)
    pinned = set(Lockfile.read(project.path / "hub.lock").requests)
    beside = project.path / "hub-responses"
    kept = sorted(p.name for p in beside.iterdir())
    (beside / ("0" * 64 + ".json")).write_text("{}")  # an answer an earlier lock pinned
    before = requests_of(server, tls_host)
    pruned = run_locked(project, "--hub-update", "--hub-prune")
    pruned.assert_outcomes(passed=2)
    # the weights in the working folder, ~/.ofa and the repo's own folder are there: only the test's image,
    # the config and the HEAD are asked again, and they are replayed from the cache
    assert requests_of(server, tls_host) == before
    assert set(Lockfile.read(project.path / "hub.lock").requests) == pinned
    assert sorted(p.name for p in beside.iterdir()) == kept  # the stale answer is gone, the pinned ones stay
    pruned.stdout.fnmatch_lines([f"  pruned hub-responses/{'0' * 64}.json"])


OUTSIDE = '''
import socket
import subprocess


def test_curl(hub):
    try:
        subprocess.run(["curl", "-sS", "https://example.org/w.pt"], capture_output=True)
    except Exception:
        pass


def test_raw_socket(hub):
    socket.create_connection(("{address}", {port}), timeout=1)


def test_udp_datagram(hub):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # unconnected: no connect to watch
        sock.sendto(b"telemetry", ("{address}", {port}))
'''


def own_address() -> str:
    """This machine's address on its outbound interface: not loopback, yet a connection to it stays here (where
    there is no route out, 0.0.0.0, which Linux connects to this machine too)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # UDP: no packet is sent
        address = probe.getsockname()[0]
    except OSError:
        address = "0.0.0.0"
    finally:
        probe.close()
    return "0.0.0.0" if address.startswith("127.") else address


@pytest.mark.parametrize("offline", [False, True], ids=["check", "offline"])
def test_a_downloading_subprocess_or_raw_connection_is_refused_and_named(project, offline):
    run_locked(project, "--hub-update").assert_outcomes(passed=2)
    address = own_address()
    project.makepyfile(test_outside=OUTSIDE.format(address=address, port=9))
    result = run_locked(project, "test_outside.py", *(["--hub-offline"] if offline else []))
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines([f"*a datagram to {address}:9 (a raw socket or a client reprohub does not "
                                 "answer) (asked at test_outside.py:18)*"])
    result.stdout.fnmatch_lines(["*reprohub refused the subprocess `curl -sS https://example.org/w.pt` "
                                 "(asked at test_outside.py:7)*"])
    result.stdout.fnmatch_lines([f"*a connection to {address}:9 (a raw socket or a client reprohub does not "
                                 "answer) (asked at test_outside.py:13)*"])
    if offline:
        result.stdout.fnmatch_lines(["*OfflineError*"])


# -- the answerer on its own: replay, damage, offline, the lock's text -------------------------------


def answerer_for(tmp_path, lock: "Lockfile | None" = None, **modes):
    from reprohub.cache.layout import CacheLayout
    from reprohub.fetch.download import Downloader
    from reprohub.lock.hermetic import RequestAnswerer
    from reprohub.lock.session import LockSession

    session = LockSession(lock or Lockfile(), str(tmp_path / "hub.lock"), **{k: v for k, v in modes.items()
                                                                               if k != "offline"})
    return RequestAnswerer(session, CacheLayout(tmp_path / "hub"), Downloader(offline=modes.get("offline", False)),
                           offline=modes.get("offline", False))


def recorded_lock(tmp_path, server, *urls) -> Lockfile:
    import urllib.request

    from reprohub.runtime.network import answering

    recorder = answerer_for(tmp_path, update=True)
    with answering(recorder):
        for url in urls:
            urllib.request.urlopen(url).read()
    return recorder.session.result()


def damage(place, at: int, data: bytes) -> None:
    """Bit rot or a hostile hand: bytes replaced in place, same size, same mtime, so no record can tell."""
    import os

    stat = place.stat()
    with open(place, "r+b") as f:
        f.seek(at)
        f.write(data)
    os.utime(place, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def _first_httpx_chunk(url: str) -> bytes:
    import httpx

    with httpx.stream("GET", url) as response:
        return next(response.iter_bytes(9))


@pytest.mark.parametrize("at", [0, 50000], ids=["first-bytes", "middle"])
@pytest.mark.parametrize("client", ["urllib-readline", "requests-first-chunk", "httpx-first-chunk"])
def test_a_body_damaged_in_the_cache_is_never_served_even_to_a_partial_reader(server, tmp_path, client, at):
    import os
    import urllib.request

    import requests

    from reprohub.runtime.network import answering

    body = b"line one\n" + b"input" * 20000  # over 64 KiB: no copy travels beside the lock
    url = server.add_file("input.bin", body)
    lock = recorded_lock(tmp_path, server, url)
    place = tmp_path / "hub" / "reprohub" / "responses" / "sha256" / lock.requests[f"GET {url}"].sha256
    read_prefix = {"urllib-readline": lambda: urllib.request.urlopen(url).readline(),
                   "requests-first-chunk": lambda: next(requests.get(url, stream=True).iter_content(9)),
                   "httpx-first-chunk": lambda: _first_httpx_chunk(url)}[client]
    recorded = place.stat()
    damage(place, at, b"LINE ONE!")
    with answering(answerer_for(tmp_path, lock, offline=True)), pytest.raises(Exception) as caught:
        read_prefix()  # offline: the damaged copy is not served, and there is no other
    assert "fill the cache first" in str(caught.value)  # the OfflineError, as each client wraps it
    assert not place.exists()  # removed: never served
    place.write_bytes(body)  # the same damage again, for a check
    os.utime(place, ns=(recorded.st_atime_ns, recorded.st_mtime_ns))
    damage(place, at, b"LINE ONE!")
    before = len(server.requests)
    with answering(answerer_for(tmp_path, lock)):  # a check: fetched anew from the origin and verified
        assert read_prefix()[:9] == b"line one\n"
    assert len(server.requests) == before + 1 and place.read_bytes() == body  # the cache is whole again


def test_offline_a_pinned_body_that_is_nowhere_is_an_offline_error_and_nothing_is_asked(server, tmp_path):
    import urllib.error
    import urllib.request

    from reprohub.errors import OfflineError
    from reprohub.runtime.network import answering

    url = server.add_file("weights.bin", b"w" * 100000)  # too large to travel beside the lock
    lock = recorded_lock(tmp_path, server, url)
    before = len(server.requests)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with answering(answerer_for(fresh, lock, offline=True)), pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(url)
    assert isinstance(caught.value.reason, OfflineError) and "fill the cache first" in str(caught.value.reason)
    assert len(server.requests) == before


def test_an_update_replays_what_is_pinned_instead_of_churning_a_volatile_answer(server, tmp_path):
    import urllib.request

    from reprohub.runtime.network import answering

    url = server.add_file("release.json", b'{"download_count": 17}')
    lock = recorded_lock(tmp_path, server, url)
    server.add_file("release.json", b'{"download_count": 18}')
    again = answerer_for(tmp_path, lock, update=True)
    with answering(again):
        assert urllib.request.urlopen(url).read() == b'{"download_count": 17}'
    assert again.session.changes() == []
    refreshing = answerer_for(tmp_path, lock, update=True, refresh=True)
    with answering(refreshing):  # --hub-refresh / --hub-accept ask again
        assert urllib.request.urlopen(url).read() == b'{"download_count": 18}'
    assert [c.key for c in refreshing.session.changes()] == [f"GET {url}"]


LOCK_HEAD = 'version = "2.2"\n[requests."GET https://h.example/a.json"]\nsha256 = "' + "0" * 64 + '"\nsize = 0\n'


@pytest.mark.parametrize("text", [
    '[unreachable."GET https://h.example/a"]\nerror = "HTTP 404\\u001b[2J\\nreprohub: all goldens verified"\n',
    '[unreachable."GET https://h.example/a"]\nerror = "DownloadError\\u0007"\n',
    '[requests."GET https://h.example/a\\u001b[2J"]\nstatus = 200\nsha256 = "' + "0" * 64 + '"\nsize = 0\n',
    '[requests."GET https://h.example/a"]\nstatus = 302\nsha256 = "' + "0" * 64 + '"\nsize = 0\n'
    'headers = {location = "https://h.example/\\u009b2J"}\n',
], ids=["unreachable-newline", "unreachable-bell", "request-key-escape", "header-c1-control"])
def test_a_lock_answer_with_a_terminal_control_is_refused_as_it_is_read(text):
    from reprohub.errors import LockfileError

    with pytest.raises(LockfileError, match="without control characters|one line each") as caught:
        Lockfile.loads('version = "2.2"\n' + text)
    message = str(caught.value)
    assert "line 2" in message and "\x1b" not in message and "\x07" not in message
    assert "\nreprohub: all goldens verified" not in message  # the value is quoted, never a line of its own


@pytest.mark.parametrize("entry, message", [
    ('status = 200\nheaders = {location = "https://h/\\r\\nSet-Cookie: a=b"}', "one line each"),
    ('status = 200\nheaders = {set-cookie = "session=1"}', "headers among"),
    ('status = 99', "status as an HTTP status"),
])
def test_a_lock_cannot_make_an_answer_carry_other_headers(entry, message):
    from reprohub.errors import LockfileError

    with pytest.raises(LockfileError, match=message) as caught:
        Lockfile.loads(LOCK_HEAD + entry + "\n")
    assert "line 2" in str(caught.value)


def test_only_get_and_head_are_answered(server, tmp_path):
    import urllib.request

    from reprohub.errors import LockMismatchError
    from reprohub.runtime.network import answering

    answerer = answerer_for(tmp_path, update=True)
    with answering(answerer), pytest.raises(LockMismatchError, match="a POST request to .* GET and HEAD"):
        urllib.request.urlopen(urllib.request.Request(server.file_url("x"), data=b"telemetry", method="POST"))
    assert server.requests == [] and answerer.session.fenced


@given(value=st.text(max_size=40))
def test_a_header_value_a_lock_accepts_is_served_as_that_one_header_and_no_other(value):
    import http.client

    import tomli_w

    from reprohub.errors import LockfileError
    from reprohub.runtime.replies import Reply, status_and_headers

    entry = {"status": 200, "sha256": "0" * 64, "size": 0, "headers": {"etag": value}}
    try:
        lock = Lockfile.loads(tomli_w.dumps({"version": "2.2", "requests": {"GET https://h.example/a": entry}}))
    except LockfileError:
        return  # refused: nothing is served
    pin = lock.requests["GET https://h.example/a"]
    head = status_and_headers(Reply(pin.status, tuple(pin.headers.items()), None), "GET")
    parsed = http.client.parse_headers(io.BytesIO(head.split(b"\r\n", 1)[1]))
    assert sorted(parsed.keys()) == ["connection", "content-length", "etag"]
    assert parsed["etag"].strip() == value.encode("latin-1", "replace").decode("latin-1").strip()


@pytest.mark.slow
def test_xdist_workers_record_the_same_lock_and_report_where_each_request_came_from(project, server, machine):
    import shutil

    recorded = run_locked(project, "--hub-update", "-n", "2")
    recorded.assert_outcomes(passed=2)
    recorded.stdout.fnmatch_lines([f"  new request GET {server.url}/files/zidane.jpg: * (asked at test_fetchy.py:7)"])
    with_xdist = (project.path / "hub.lock").read_bytes()
    for made in ("hub.lock", "hub-responses", "goldens"):
        shutil.rmtree(project.path / made) if (project.path / made).is_dir() else (project.path / made).unlink()
    machine.fresh()
    run_locked(project, "--hub-update").assert_outcomes(passed=2)
    assert (project.path / "hub.lock").read_bytes() == with_xdist
    run_locked(project, "-n", "2").assert_outcomes(passed=2)


def test_reprohub_fetch_fills_a_fresh_cache_for_an_offline_run(project, server, tls_host, machine):
    run_locked(project, "--hub-update").assert_outcomes(passed=2)
    machine.fresh()
    assert main(["fetch", "--lock", str(project.path / "hub.lock")]) == EXIT_OK  # the 128 kB weights among them
    before = requests_of(server, tls_host)
    run_locked(project, "--hub-offline").assert_outcomes(passed=2)
    assert requests_of(server, tls_host) == before


def test_an_edit_of_the_lock_alone_cannot_redirect_a_fresh_check_to_another_host(server, tmp_path):
    import dataclasses
    import hashlib
    import urllib.request

    from reprohub.errors import LockMismatchError
    from reprohub.lock.lockfile import RequestPin
    from reprohub.runtime.network import answering

    weights = server.add_file("w.bin", b"w" * 100000)
    server.inject("/files/latest", *(Fault("redirect", status=302, location=weights) for _ in range(5)))
    lock = recorded_lock(tmp_path, server, server.file_url("latest"))
    with answering(answerer_for(tmp_path / "fresh", lock)):  # a fresh cache: the redirect is checked, then followed
        assert urllib.request.urlopen(server.file_url("latest")).read() == b"w" * 100000

    evil = server.add_file("evil.bin", b"pickled payload")  # the editor's host, serving the bytes the edit pins
    redirect = lock.requests[f"GET {server.file_url('latest')}"]
    lock.requests[redirect.key] = dataclasses.replace(redirect, headers={**redirect.headers, "location": evil})
    lock.requests[f"GET {evil}"] = RequestPin(f"GET {evil}", 200, hashlib.sha256(b"pickled payload").hexdigest(), 15)
    answerer = answerer_for(tmp_path / "fresh-2", lock)
    with answering(answerer), pytest.raises(LockMismatchError, match=f"redirect of GET .*/files/latest to {evil}"):
        urllib.request.urlopen(server.file_url("latest")).read()
    assert not any(path == "/files/evil.bin" for _, path, _ in server.requests)


def test_after_a_power_loss_a_body_whose_data_was_lost_is_fetched_again_not_served(server, tmp_path, boot):
    import hashlib
    import os
    import urllib.request

    from reprohub.runtime.network import answering

    url = server.add_file("input.bin", b"input" * 20000)
    lock = recorded_lock(tmp_path, server, url)
    pin = lock.requests[f"GET {url}"]
    place = tmp_path / "hub" / "reprohub" / "responses" / "sha256" / pin.sha256
    stat = place.stat()
    place.write_bytes(b"\0" * stat.st_size)  # the rename reached the disk, the data did not
    os.utime(place, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    boot.id = "boot-b"  # the machine came back
    with answering(answerer_for(tmp_path, lock)):
        assert urllib.request.urlopen(url).read() == b"input" * 20000
    assert hashlib.sha256(place.read_bytes()).hexdigest() == pin.sha256  # and the cache is whole again


def test_an_async_httpx_client_is_answered_too(server, tmp_path):
    import asyncio

    import httpx

    from reprohub.runtime.network import answering

    url = server.add_file("config.json", b'{"width": 7}')

    async def get_width():
        async with httpx.AsyncClient() as client:
            return (await client.get(url)).json()["width"]

    recorder = answerer_for(tmp_path, update=True)
    with answering(recorder):
        assert asyncio.run(get_width()) == 7
    before = len(server.requests)
    with answering(answerer_for(tmp_path, recorder.session.result())):
        assert asyncio.run(get_width()) == 7
    assert len(server.requests) == before


@pytest.fixture
def gzip_host():
    """A host that compresses what it sends when the client accepts gzip (as GitHub's API does)."""
    import gzip

    def answer(headers):
        body = b'{"assets": ["' + b"w" * 5000 + b'"]}'
        if "gzip" not in headers.get("Accept-Encoding", ""):
            return 200, {"Content-Type": "application/json"}, body
        return 200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, gzip.compress(body, mtime=0)

    with serving(answer) as url:
        yield url


def test_a_compressed_answer_is_pinned_as_sent_and_decoded_by_the_client_on_replay(gzip_host, tmp_path):
    import requests

    from reprohub.runtime.network import answering

    recorder = answerer_for(tmp_path, update=True)
    with answering(recorder):
        assert len(requests.get(gzip_host).json()["assets"][0]) == 5000
    pin = recorder.session.recorded.requests[f"GET {gzip_host}"]
    assert pin.headers["content-encoding"] == "gzip" and pin.size < 1000  # the bytes on the wire
    for cache in (tmp_path, tmp_path / "fresh"):  # replayed from the cache, then fetched again and verified
        with answering(answerer_for(cache, recorder.session.result())):
            assert len(requests.get(gzip_host).json()["assets"][0]) == 5000


OWN_SERVER = '''
import os
import urllib.request


def test_talks_to_its_own_server(hub):
    assert urllib.request.urlopen(os.environ["OWN_SERVER"] + "/files/ping").read() == b"pong"
'''


def test_a_test_s_own_server_named_unpinned_is_asked_directly_on_any_port(pytester, monkeypatch):
    pytester.makefile(".ini", pytest="[pytest]\nhub_unpinned_hosts =\n    localhost\n")
    pytester.makepyfile(test_own=OWN_SERVER)
    for mode in (["--hub-update"], []):  # a new port each run: nothing to pin, nothing to replay
        with HubServer(host="localhost") as own:
            own.add_file("ping", b"pong")
            monkeypatch.setenv("OWN_SERVER", own.url.replace("127.0.0.1", "localhost"))
            run_locked(pytester, *mode).assert_outcomes(passed=1)
            assert [path for _, path, _ in own.requests] == ["/files/ping"]
    assert Lockfile.read(pytester.path / "hub.lock").requests == {}


def test_a_refused_connection_names_the_name_its_code_just_resolved_and_only_that_one():
    """The audit hook's own path: a lookup (allowed while recording) and then a connection to the address it gave;
    a later connection in the same thread, with no lookup before it, names no stale name."""
    from reprohub.runtime import fence
    from reprohub.runtime.network import answering

    class Recording:
        refused: list = []

        def answer(self, request):
            raise AssertionError("no HTTP here")

        def refuse(self, what, caller):
            self.refused.append(what)

        def answers(self, host, port):
            return True

        def lookup(self, name, caller):
            pass  # recording: lookups allowed

    answerer = Recording()
    with answering(answerer), socket.socket() as sock:
        fence._audit("socket.getaddrinfo", ("weights.example", 443, 0, 0, 0))
        fence._audit("socket.connect", (sock, ("192.0.2.7", 443)))
        fence._audit("socket.connect", (sock, ("192.0.2.8", 443)))
    assert answerer.refused == [
        "a connection to 192.0.2.7:443 (weights.example) (a raw socket or a client reprohub does not answer)",
        "a connection to 192.0.2.8:443 (a raw socket or a client reprohub does not answer)"]
