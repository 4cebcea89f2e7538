"""The hermetic recorder under a hostile pull request, a bad disk and many workers (issue 36).

Each test makes the edit or the bad luck as it would come -- a lock or a folder committed by a pull
request, a host of the editor's (a second loopback server), a full tmpfs, two xdist workers -- and
asserts the one safe outcome: refused before the host is asked, nothing written or deleted outside the
project, no credential in what is committed, no damaged or swapped byte served."""

import dataclasses
import hashlib
import os
import shutil
import subprocess
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler

import pytest

from reprohub.errors import LocalDiskError, LockMismatchError
from reprohub.lock.lockfile import Lockfile, RequestPin
from reprohub.lock.session import LockSession
from reprohub.runtime.network import answering
from reprohub.testing.server import Fault, HubServer, QuietHTTPServer

from .conftest import run_locked, serving
from .test_hermetic import answerer_for, recorded_lock, trusted_tls_context


def paths_asked(host: HubServer) -> list[str]:
    return [path for _, path, _ in host.requests]


# -- 1. nothing is written or deleted through a link out of the project -----------------------------

FETCHES = '''
import urllib.request


def test_fetches(hub):
    assert urllib.request.urlopen("{url}").read() == b"{{}}"
'''


def test_a_hub_responses_link_out_of_the_project_is_refused_and_nothing_outside_is_touched(
        pytester, server, tmp_path):
    url = server.add_file("config.json", b"{}")
    pytester.makepyfile(test_fetch=FETCHES.format(url=url))
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    lock_before = (pytester.path / "hub.lock").read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "id_ed25519").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    beside = pytester.path / "hub-responses"
    for path in beside.iterdir():
        path.unlink()
    beside.rmdir()
    beside.symlink_to(os.path.relpath(outside, pytester.path))  # what the pull request commits
    result = run_locked(pytester, "--hub-update", "--hub-prune")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*hub-responses/ (beside hub.lock) inside the project*a link to *outside*"])
    assert sorted(p.name for p in outside.iterdir()) == ["id_ed25519"]  # not pruned, nothing written into it
    assert (pytester.path / "hub.lock").read_bytes() == lock_before


GOLDEN = '''
import torch


def test_a(hub, golden):
    hub.load("acme/tiny:v1", "version")
    golden.check(torch.ones(3))
'''


def test_a_golden_folder_link_out_of_the_project_is_neither_pruned_nor_written(pytester, server, tiny_repo,
                                                                                tmp_path, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_a=GOLDEN, test_b=GOLDEN.replace("test_a", "test_b").replace("ones(3)", "ones(4)"))
    run_locked(pytester, "--hub-update").assert_outcomes(passed=2)
    outside = tmp_path / "outside"
    (pytester.path / "goldens").rename(outside)  # the pull request moves them out and links the folder there
    (pytester.path / "goldens").symlink_to(os.path.relpath(outside, pytester.path))
    before = sorted(p.relative_to(outside) for p in outside.rglob("*"))
    (pytester.path / "test_b.py").unlink()
    result = run_locked(pytester, "--hub-update", "--hub-prune")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*the golden folder goldens/ inside the project*a link to *outside*"])
    assert sorted(p.relative_to(outside) for p in outside.rglob("*")) == before


# -- 2. a lock-only edit cannot steer CI to another host, with a fragment or a hop of its own -------

@pytest.fixture
def evil():
    """The editor's host: serves whatever the edit pins."""
    with HubServer() as host:
        yield host


@pytest.mark.parametrize("edit", ["fragment", "two-hops"])
def test_an_edited_redirect_is_refused_before_the_editor_s_host_is_asked(server, evil, tmp_path, edit):
    weights = server.add_file("w.bin", b"w" * 100000)
    server.inject("/files/latest", *(Fault("redirect", status=302, location=weights) for _ in range(5)))
    lock = recorded_lock(tmp_path, server, server.file_url("latest"))
    payload = evil.add_file("payload", b"pickled payload")
    redirect = lock.requests[f"GET {server.file_url('latest')}"]
    first_hop = payload + "#x" if edit == "fragment" else evil.file_url("hop")
    lock.requests[redirect.key] = dataclasses.replace(redirect, headers={**redirect.headers, "location": first_hop})
    if edit == "two-hops":
        lock.requests[f"GET {evil.file_url('hop')}"] = RequestPin(f"GET {evil.file_url('hop')}", 302, redirect.sha256,
                                                                  0, {"location": payload})
    lock.requests[f"GET {payload}"] = RequestPin(f"GET {payload}", 200, hashlib.sha256(b"pickled payload").hexdigest(), 15)
    for client in ("urllib", "requests"):
        fresh = answerer_for(tmp_path / f"fresh-{client}", lock)
        with answering(fresh), pytest.raises(Exception) as caught:
            if client == "urllib":
                urllib.request.urlopen(server.file_url("latest")).read()
            else:
                import requests

                requests.get(server.file_url("latest")).content
        assert "redirect of GET" in str(caught.value) and fresh.session.fenced
        assert paths_asked(evil) == []  # neither the hop nor the payload


# -- 3. a lock-only edit cannot swap one pinned answer for another ---------------------------------

def test_a_digest_edited_to_another_stored_body_is_not_served_from_the_cache_or_beside_the_lock(server, tmp_path):
    from reprohub.cache.layout import CacheLayout
    from reprohub.lock.beside import write_beside

    labels = server.add_file("labels.txt", b"cat\ndog\n")
    other = server.add_file("other.txt", b"rm -rf ~\n")
    lock = recorded_lock(tmp_path, server, labels, other)
    write_beside(lock, tmp_path / "hub.lock", CacheLayout(tmp_path / "hub"))  # both small: they travel beside
    swapped = lock.requests[f"GET {other}"]
    lock.requests[f"GET {labels}"] = dataclasses.replace(lock.requests[f"GET {labels}"], sha256=swapped.sha256,
                                                         size=swapped.size)
    for cache in (tmp_path, tmp_path / "fresh"):  # warm: the body is cached; fresh: only hub-responses/ has it
        if cache != tmp_path:  # a reviewer's checkout: the project's hub-responses/, an empty cache
            shutil.copytree(tmp_path / "hub-responses", cache / "hub-responses")
        answerer = answerer_for(cache, lock)
        with answering(answerer), pytest.raises(LockMismatchError, match=f"pinned answer to GET {labels}"):
            urllib.request.urlopen(labels).read()  # the origin's labels are not the pinned digest: refused
        assert answerer.session.fenced


# -- 4. no signing parameter or credential reaches the lock; a signature that expired is no change ---

class SigningHost:
    """A release host as GitHub's and S3's are: ``/files/<name>`` answers 302 to a URL signed for this request
    (a new signature, token and credential each time) that expires after a second; the signed URL serves the
    bytes, an expired or unknown one 403."""

    def __init__(self, files: dict, tls=None) -> None:
        self.files, self.issued, self.asked = files, {}, []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                host.asked.append(self.path)
                path, _, query = self.path.partition("?")
                name = path.rsplit("/", 1)[-1]
                if path.startswith("/files/") and name in host.files:
                    token = os.urandom(8).hex()
                    host.issued[token] = __import__("time").monotonic() + 1.0
                    self.send_response(302)
                    self.send_header("Location", f"{host.url}/cdn/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
                                     f"X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261205&X-Amz-Signature={token}&"
                                     f"sp=r&se=2026-12-05&sig={token}&jwt=eyJ{token}&response-content-type=x")
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"Found it.")  # a body that is not kept: it may name the signed URL
                    return
                signed = dict(pair.partition("=")[::2] for pair in query.split("&"))
                live = host.issued.get(signed.get("X-Amz-Signature", ""), 0) > __import__("time").monotonic()
                body = host.files.get(name) if path.startswith("/cdn/") and live else None
                self.send_response(200 if body is not None else 403)
                body = body if body is not None else b"<Error>Request has expired</Error>"
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def signing_host(tmp_path, monkeypatch):
    """Over TLS, with a certificate a test CA signed (trusted through SSL_CERT_FILE, as a machine trusts GitHub's)."""
    context = trusted_tls_context(tmp_path, monkeypatch)
    host = SigningHost({"w.bin": b"weights" * 20000, "labels.json": b'{"labels": ["cat", "dog"]}'}, tls=context)
    yield host
    host.close()


def test_signed_redirects_record_the_same_lock_with_no_secret_and_replay_after_the_signature_expired(
        signing_host, tmp_path):
    import time

    from reprohub.cache.layout import CacheLayout
    from reprohub.lock.hermetic import steering  # noqa: F401  (reprohub fetch walks the same chain)

    from reprohub.lock.beside import write_beside

    url, labels = f"{signing_host.url}/files/w.bin", f"{signing_host.url}/files/labels.json"
    texts, beside = [], []
    for n in (1, 2):  # two recordings on fresh caches
        lock = recorded_lock(tmp_path / f"rec{n}", None, url, labels)
        texts.append(lock.dumps())
        write_beside(lock, tmp_path / f"rec{n}" / "hub.lock", CacheLayout(tmp_path / f"rec{n}" / "hub"))
        beside.append({p.name: p.read_bytes() for p in (tmp_path / f"rec{n}" / "hub-responses").iterdir()})
    assert texts[0] == texts[1] and beside[0] == beside[1] and len(beside[0]) == 1  # the labels travel beside
    for secret in ("AKIA", "X-Amz-Signature", "X-Amz-Credential", "sig=", "jwt", "Found it"):
        assert secret not in texts[0] and not any(secret.encode() in body for body in beside[0].values())
    pinned = lock.requests[f"GET {signing_host.url}/cdn/w.bin?response-content-type=x"]
    assert pinned.size == 140000
    time.sleep(1.2)  # every signature issued so far has expired
    checker = answerer_for(tmp_path / "fresh", lock)
    with answering(checker):
        assert urllib.request.urlopen(url).read() == b"weights" * 20000  # the origin's current chain, verified
    assert not checker.session.fenced
    fetcher = answerer_for(tmp_path / "fetched", lock)  # reprohub fetch on a fresh machine, then offline
    assert fetcher.body_for(pinned) is not None
    with answering(answerer_for(tmp_path / "fetched", lock, offline=True)):
        assert urllib.request.urlopen(url).read() == b"weights" * 20000
    assert CacheLayout(tmp_path / "fetched" / "hub").response_body(pinned.sha256).is_file()


def test_a_redirect_that_now_leads_to_another_host_is_refused_before_that_host_is_asked(server, evil, tmp_path):
    weights = server.add_file("w.bin", b"w" * 100000)
    server.inject("/files/latest", Fault("redirect", status=302, location=weights))
    lock = recorded_lock(tmp_path, server, server.file_url("latest"))
    moved = evil.add_file("w.bin", b"w" * 100000)  # the same bytes, on a host the lock never named
    server.inject("/files/latest", Fault("redirect", status=302, location=moved))
    fresh = answerer_for(tmp_path / "fresh", lock)
    with answering(fresh), pytest.raises(LockMismatchError, match=f"found HTTP 302 to {moved} at the origin"):
        urllib.request.urlopen(server.file_url("latest")).read()
    assert paths_asked(evil) == []


def test_a_presigned_location_keeps_no_credential_in_the_lock(server, tmp_path):
    weights = server.add_file("w.bin", b"w" * 1000)
    signed = weights + "?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE&X-Amz-Signature=0123abcd&X-Amz-Date=20261205"
    server.inject("/files/latest", Fault("redirect", status=302, location=signed))
    lock = recorded_lock(tmp_path, server, server.file_url("latest"))
    assert lock.requests[f"GET {server.file_url('latest')}"].headers["location"] == weights
    assert "AKIA" not in lock.dumps() and "Signature" not in lock.dumps()


# -- 6. a full disk while recording is a local failure, not the URL's ------------------------------

@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs as the hub dir: it fills up while a larger body is recorded."""
    place = tmp_path / "small-disk"
    place.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(place)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield place
    subprocess.run(["umount", "-l", str(place)], check=False)


def test_a_full_disk_while_recording_is_named_local_and_never_pinned_as_unreachable(server, full_disk):
    url = server.add_file("big.bin", b"b" * (1 << 20))
    recorder = answerer_for(full_disk, update=True)
    with answering(recorder):
        try:  # a test that falls back when a download fails
            urllib.request.urlopen(url).read()
        except Exception as err:  # noqa: BLE001 -- what repo code does
            caught = err
    assert isinstance(caught, LocalDiskError) or isinstance(getattr(caught, "reason", None), LocalDiskError)
    refusals = [what for whats in recorder.session.fenced.values() for what in whats]
    assert len(refusals) == 1 and "a local failure while recording the answer to GET" in refusals[0]
    assert "No space left on device" in refusals[0] and "free space" in refusals[0]
    assert recorder.session.recorded.unreachable == {} and recorder.session.recorded.requests == {}


# -- 7. two workers that got different answers to one request --------------------------------------

def test_two_workers_with_different_answers_to_one_request_are_a_named_conflict():
    key = "GET https://h.example/counter.json"
    controller = LockSession(Lockfile(), "hub.lock", update=True)
    for n, digest in enumerate(("1" * 64, "2" * 64)):
        worker = LockSession(Lockfile(), "hub.lock", update=True)
        worker.record_request(RequestPin(key, 200, digest, 10 + n, {"content-type": "application/json"}))
        controller.absorb(worker.export())
    assert controller.conflicts == [f"request {key}: two workers got different answers (HTTP 200, 10 bytes, "
                                    f"sha256 111111111111 and HTTP 200, 11 bytes, sha256 222222222222); record it "
                                    "without -n, or make the answer stable"]
    same = LockSession(Lockfile(), "hub.lock", update=True)
    for repo in ("", "acme/a:v1"):  # the same answer, asked by test code and by a repo: no conflict
        worker = LockSession(Lockfile(), "hub.lock", update=True)
        worker.record_request(RequestPin(key, 200, "1" * 64, 10, {}, repo=repo))
        same.absorb(worker.export())
    assert same.conflicts == []


# -- 8. conditional requests ---------------------------------------------------------------------------

@pytest.fixture
def etag_host():
    """A host that honours If-None-Match, as GitHub's API and the Hugging Face Hub do."""
    def answer(headers):
        if headers.get("If-None-Match") == '"v1"':
            return 304, {"ETag": '"v1"'}, b""
        return 200, {"ETag": '"v1"', "Content-Type": "application/json"}, b'{"tag": "v1"}'

    with serving(answer) as url:
        yield url


def test_a_warm_client_cache_records_the_full_answer_and_its_condition_is_answered_from_the_pin(etag_host, tmp_path):
    import requests

    recorder = answerer_for(tmp_path, update=True)
    with answering(recorder):
        assert requests.get(etag_host, headers={"If-None-Match": '"v1"'}).status_code == 304  # the client's cache
    pin = recorder.session.recorded.requests[f"GET {etag_host}"]
    assert (pin.status, pin.size) == (200, 13)  # the whole answer, not "304, 0 bytes"
    for cache in (tmp_path, tmp_path / "fresh"):
        with answering(answerer_for(cache, recorder.session.result())):
            assert requests.get(etag_host).json() == {"tag": "v1"}
            assert requests.get(etag_host, headers={"If-None-Match": '"v1"'}).status_code == 304
            assert requests.get(etag_host, headers={"If-None-Match": '"v0"'}).json() == {"tag": "v1"}


# -- 9. requests outside any test ----------------------------------------------------------------------

LATE_THREAD = '''
import threading
import time
import urllib.request

LATE = threading.Event()
DONE = threading.Event()


def _telemetry():
    LATE.wait(10)
    try:
        urllib.request.urlopen("{url}").read()
    except Exception:
        pass
    DONE.set()


def test_starts_a_thread(hub):
    threading.Thread(target=_telemetry, daemon=True).start()


def test_innocent(hub):
    LATE.set()  # the first test's thread asks while this one runs
    DONE.wait(10)
'''


def test_a_thread_s_request_during_another_test_fails_the_session_naming_the_test_that_started_it(
        pytester, server):
    url = server.add_file("telemetry", b"ok")
    pytester.makepyfile(test_late=LATE_THREAD.format(url=url))
    before = len(server.requests)
    for mode in ([], ["--hub-offline"]):
        pytester.path.joinpath("hub.lock").write_text('version = "2.0"\n')
        result = run_locked(pytester, *mode)
        result.assert_outcomes(passed=2)  # the innocent test passes
        assert result.ret != 0
        result.stdout.fnmatch_lines([f"*ERROR: reprohub refused a request the lock does not pin: GET {url}*asked by a "
                                     "thread that test_late.py::test_starts_a_thread started, after that test's report"])
    assert len(server.requests) == before  # never sent



# -- a large lock: repeated messages are counted, not printed 100,000 times ---------------------------

def test_a_lock_of_many_requests_prints_a_bounded_summary(pytester):
    lock = Lockfile(requests={f"GET https://h.example/f{n}.json": RequestPin(
        f"GET https://h.example/f{n}.json", 200, f"{n:064x}", 10, {"content-type": "application/json"})
        for n in range(300)})
    lock.write(pytester.path / "hub.lock")
    pytester.makepyfile(test_nothing="def test_nothing(hub):\n    pass\n")
    for mode in ([], ["--hub-update"]):  # check: one unused warning each; update: one "not written" each too
        result = run_locked(pytester, *mode)
        text = result.stdout.str()
        assert text.count("warning: unused request") == 50 and "  ... and 250 more unused requests" in text
        assert len(result.stdout.lines) < 200
    assert text.count("was not written") == 50 and "  ... and 250 more bodies not in this cache" in text
