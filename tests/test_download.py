"""The downloader: digests in flight, faults, retries, resume; mocked and against a real server."""

import hashlib
import io
import os

import pytest
import requests
import responses

from reprohub.fetch.download import Downloader, DownloadPolicy
from reprohub.errors import (DownloadError, HashMismatchError, OfflineError, ReprohubError,
                             TruncatedDownloadError)
from reprohub.testing.server import Fault

from .conftest import FAST_POLICY

BODY = os.urandom(3 * (1 << 20) + 12345)
DIGEST = hashlib.sha256(BODY).hexdigest()
BIG_BODY = os.urandom(13 << 20)  # several full buffers through the pipelined pump


def downloader(sleeps=None):
    return Downloader(policy=FAST_POLICY, sleep=(sleeps.append if sleeps is not None else lambda s: None))


# -- with responses mocks ---------------------------------------------------------------

@responses.activate
def test_mocked_download_is_hashed_and_written(tmp_path):
    responses.get("https://weights.example/w.pt", body=BODY)
    got = downloader().fetch("https://weights.example/w.pt", tmp_path / "w.pt", progress=False)
    assert got.sha256 == DIGEST and got.size == len(BODY)
    assert (tmp_path / "w.pt").read_bytes() == BODY
    assert os.listdir(tmp_path) == ["w.pt"]


@responses.activate
def test_retries_on_503_then_succeeds_with_backoff(tmp_path):
    responses.get("https://weights.example/w.pt", status=503)
    responses.get("https://weights.example/w.pt", status=502)
    responses.get("https://weights.example/w.pt", body=BODY)
    sleeps = []
    got = downloader(sleeps).fetch("https://weights.example/w.pt", tmp_path / "w.pt", progress=False)
    assert got.sha256 == DIGEST
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0]  # exponential backoff


@responses.activate
def test_429_honours_retry_after(tmp_path):
    responses.get("https://weights.example/w.pt", status=429, headers={"Retry-After": "0.04"})
    responses.get("https://weights.example/w.pt", body=b"ok")
    sleeps = []
    downloader(sleeps).fetch("https://weights.example/w.pt", tmp_path / "w.pt", progress=False)
    assert sleeps == [0.04]


@responses.activate
def test_404_fails_at_once_with_a_clear_error(tmp_path):
    responses.get("https://weights.example/missing.pt", status=404)
    with pytest.raises(DownloadError) as info:
        downloader().fetch("https://weights.example/missing.pt", tmp_path / "m.pt", progress=False)
    assert info.value.status == 404 and "missing.pt" in str(info.value) and "check the URL" in str(info.value)
    assert len(responses.calls) == 1 and not os.listdir(tmp_path)


@responses.activate
def test_gives_up_after_retries_and_leaves_nothing(tmp_path):
    for _ in range(10):
        responses.get("https://weights.example/w.pt", body=requests.ConnectionError("refused"))
    with pytest.raises(DownloadError) as info:
        downloader().fetch("https://weights.example/w.pt", tmp_path / "w.pt", progress=False)
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, ReprohubError)
    assert len(responses.calls) == FAST_POLICY.retries + 1
    assert not os.listdir(tmp_path)


@responses.activate
def test_digest_mismatch_keeps_the_earlier_good_file(tmp_path):
    (tmp_path / "w.pt").write_bytes(b"earlier good file")
    responses.get("https://weights.example/w.pt", body=BODY)
    with pytest.raises(HashMismatchError) as info:
        downloader().fetch("https://weights.example/w.pt", tmp_path / "w.pt", expected_sha256="0" * 64,
                           progress=False)
    message = str(info.value)
    assert "https://weights.example/w.pt" in message and "0" * 64 in message and DIGEST in message
    assert (tmp_path / "w.pt").read_bytes() == b"earlier good file"
    assert os.listdir(tmp_path) == ["w.pt"]


def test_offline_refuses_before_any_request(tmp_path):
    with responses.RequestsMock() as mock:
        with pytest.raises(OfflineError, match="offline"):
            Downloader(offline=True).fetch("https://weights.example/w.pt", tmp_path / "w.pt")
        assert len(mock.calls) == 0


# -- against a real server on 127.0.0.1 -------------------------------------------------

def test_real_server_download_matches(server, tmp_path):
    url = server.add_file("w.bin", BODY)
    got = downloader().fetch(url, tmp_path / "w.bin", progress=False)
    assert got.sha256 == DIGEST and (tmp_path / "w.bin").read_bytes() == BODY
    assert server.full_downloads("/files/w.bin") == 1


@pytest.mark.parametrize("body", [BODY, BIG_BODY], ids=["inline", "pipelined"])
def test_drop_mid_stream_resumes_with_range(server, tmp_path, body):
    url = server.add_file("w.bin", body)
    server.inject("/files/w.bin", Fault("truncate", after=len(body) // 3))
    got = downloader().fetch(url, tmp_path / "w.bin", progress=False)
    assert got.sha256 == hashlib.sha256(body).hexdigest()
    ranges = [h.get("Range") for _, p, h in server.requests if p == "/files/w.bin"]
    assert ranges[0] is None and ranges[1].startswith("bytes=") and int(ranges[1][6:-1]) > 0
    assert ranges[1].endswith("-")


@pytest.mark.parametrize("body", [BODY, BIG_BODY], ids=["inline", "pipelined"])
def test_server_ignoring_range_restarts_cleanly(server, tmp_path, body):
    url = server.add_file("w.bin", body)
    server.inject("/files/w.bin", Fault("truncate", after=len(body) // 2), Fault("ignore_range"))
    got = downloader().fetch(url, tmp_path / "w.bin", progress=False)
    assert got.sha256 == hashlib.sha256(body).hexdigest() and (tmp_path / "w.bin").read_bytes() == body


def test_repeated_short_bodies_are_an_error_never_a_file(server, tmp_path):
    url = server.add_file("w.bin", BODY)
    server.inject("/files/w.bin", *[Fault("truncate", after=0) for _ in range(10)])
    with pytest.raises(TruncatedDownloadError) as info:
        downloader().fetch(url, tmp_path / "w.bin", progress=False)
    assert "nothing was cached" in str(info.value)
    assert not os.listdir(tmp_path)


def test_real_5xx_then_success_and_429_retry_after(server, tmp_path):
    url = server.add_file("w.bin", BODY)
    server.inject("/files/w.bin", Fault("status", 500), Fault("status", 429, retry_after="0"))
    sleeps = []
    got = downloader(sleeps).fetch(url, tmp_path / "w.bin", progress=False)
    assert got.sha256 == DIGEST and sleeps[-1] == 0.0
    assert server.hits("/files/w.bin") == 3


def test_corrupted_body_fails_the_pinned_digest(server, tmp_path):
    url = server.add_file("w.bin", BODY)
    server.inject("/files/w.bin", Fault("corrupt"))
    with pytest.raises(HashMismatchError):
        downloader().fetch(url, tmp_path / "w.bin", expected_sha256=DIGEST, progress=False)
    assert not (tmp_path / "w.bin").exists()


def test_hash_prefix_is_checked(server, tmp_path):
    url = server.add_file("w.bin", BODY)
    downloader().fetch(url, tmp_path / "a", hash_prefix=DIGEST[:8], progress=False)
    with pytest.raises(HashMismatchError, match="invalid hash value"):
        downloader().fetch(url, tmp_path / "b", hash_prefix="deadbeef", progress=False)


def test_progress_bar_goes_to_stderr_not_stdout(server, tmp_path, capsys):
    url = server.add_file("w.bin", BODY)
    downloader().fetch(url, tmp_path / "w.bin", progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "w.bin" in err


def test_policy_from_environment(monkeypatch):
    monkeypatch.setenv("REPROHUB_TIMEOUT", "7")
    monkeypatch.setenv("REPROHUB_RETRIES", "1")
    policy = DownloadPolicy.from_env()
    assert (policy.read_timeout, policy.retries) == (7.0, 1)


def test_a_server_that_always_cuts_and_ignores_range_cannot_loop(server, tmp_path):
    url = server.add_file("w.bin", BODY)
    server.inject("/files/w.bin", *[Fault("truncate", after=1 << 20, ignore_range=True) for _ in range(50)])
    with pytest.raises(TruncatedDownloadError, match="ignored Range requests"):
        downloader().fetch(url, tmp_path / "w.bin", progress=False)
    assert server.hits("/files/w.bin") == FAST_POLICY.retries + 2  # the first try, then bounded restarts
    assert not (tmp_path / "w.bin").exists()


# -- each truncation guard on its own (the others cannot stand in for it here) -----------------

def test_guard_a_socket_closed_before_content_length_is_an_incomplete_read():
    import http.client
    import io
    from types import SimpleNamespace

    import urllib3

    from reprohub.fetch.transport import reader_of as _reader_of

    class Sock:
        def makefile(self, *args, **kwargs):
            return io.BytesIO(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabcd")

    raw = http.client.HTTPResponse(Sock())
    raw.begin()
    read = _reader_of(SimpleNamespace(raw=SimpleNamespace(_fp=raw, readinto=None), headers={}))
    buf = memoryview(bytearray(16))
    assert read(buf) == 4
    with pytest.raises(urllib3.exceptions.IncompleteRead):  # not a silent 0, which would look like the end
        read(buf[4:])


def test_guard_b_a_reader_that_stops_early_is_resumed_not_trusted(server, tmp_path, monkeypatch):
    from reprohub.fetch import transport

    cut = 1 << 20

    def silently_short(response):  # a reader with no guard of its own: EOF after 1 MiB per response
        real, sent = response.raw, [0]

        def read(buf):
            if sent[0] >= cut:
                return 0
            n = real.readinto(buf[: cut - sent[0]])
            sent[0] += n
            return n
        return read

    monkeypatch.setattr(transport, "reader_of", silently_short)
    got = downloader().fetch(server.add_file("w.bin", BODY), tmp_path / "w", progress=False)
    assert got.sha256 == DIGEST and got.size == len(BODY)
    assert sum("Range" in h for _, p, h in server.requests if p == "/files/w.bin") == len(BODY) // cut


def test_guard_c_what_a_failed_transfer_is_called():
    import http.client

    from reprohub.fetch.outcomes import final_error as _final_error

    assert isinstance(_final_error("u", http.client.IncompleteRead(b""), 10), TruncatedDownloadError)
    reset = _final_error("u", ConnectionResetError("reset"), 0)
    assert isinstance(reset, DownloadError) and not isinstance(reset, TruncatedDownloadError)


# -- connections and the environment ----------------------------------------------------------

def test_one_connection_serves_consecutive_downloads_but_never_after_a_cut_body(server, tmp_path):
    small, big = os.urandom(1 << 20), BIG_BODY
    one = downloader()
    for i, body in enumerate((small, big, small)):  # inline and pipelined pumps both hand the connection back
        assert one.fetch(server.add_file(f"f{i}.bin", body), tmp_path / f"f{i}", progress=False).size == len(body)
    assert server.connections == 1

    server.inject("/files/cut.bin", Fault("truncate", after=1000))
    got = one.fetch(server.add_file("cut.bin", small), tmp_path / "cut", progress=False)
    assert got.sha256 == hashlib.sha256(small).hexdigest()  # resumed on a fresh connection, the cut one dropped
    assert server.connections == 2


def test_proxy_variables_are_honoured(server, tmp_path, monkeypatch):
    from reprohub.testing.server import HubServer

    with HubServer() as proxy:  # answers a proxied "GET http://host/files/w.bin" from its own files
        proxy.add_file("w.bin", b"through the proxy")
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        got = downloader().fetch(server.add_file("w.bin", b"direct"), tmp_path / "w", progress=False)
    assert (tmp_path / "w").read_bytes() == b"through the proxy" and got.size == len(b"through the proxy")
    assert proxy.hits("/files/w.bin") == 1 and server.hits("/files/w.bin") == 0


def test_a_redirect_to_another_host_brings_its_body_and_never_the_token(server, tmp_path):
    """Downloads bypass requests' per-request merging (transport.stream_get); redirects must still be
    requests' own: followed, and ``Authorization`` dropped when the host changes (a CDN, a signed URL)."""
    from reprohub.testing.server import HubServer

    with HubServer() as cdn:
        target = cdn.add_file("w.bin", b"from the cdn")
        server.inject("/files/w.bin", Fault("redirect", status=302, location=target))
        got = downloader().fetch(server.add_file("w.bin", b"origin"), tmp_path / "w", progress=False,
                                 headers={"Authorization": "Bearer sekrit"})
        (_, _, at_origin), = [r for r in server.requests if r[1] == "/files/w.bin"]
        (_, _, at_cdn), = [r for r in cdn.requests if r[1] == "/files/w.bin"]
    assert (tmp_path / "w").read_bytes() == b"from the cdn" and got.sha256 == hashlib.sha256(b"from the cdn").hexdigest()
    assert at_origin.get("Authorization") == "Bearer sekrit" and "Authorization" not in at_cdn


def test_a_redirect_on_the_same_host_keeps_the_token_and_a_loop_fails_at_once(server, tmp_path):
    body = b"moved here"
    server.inject("/files/old.bin", Fault("redirect", status=301, location=server.add_file("new.bin", body)))
    downloader().fetch(server.add_file("old.bin", b"stale"), tmp_path / "w", progress=False,
                       headers={"Authorization": "Bearer sekrit"})
    (_, _, moved), = [r for r in server.requests if r[1] == "/files/new.bin"]
    assert (tmp_path / "w").read_bytes() == body and moved.get("Authorization") == "Bearer sekrit"

    loop = server.add_file("loop.bin", b"never")
    server.inject("/files/loop.bin", *[Fault("redirect", status=302, location=loop) for _ in range(200)])
    sleeps = []
    with pytest.raises(DownloadError, match="redirects") as info:
        downloader(sleeps).fetch(loop, tmp_path / "loop", progress=False)
    assert "curl -sIL" in str(info.value) and sleeps == []  # not retried: no retry mends a loop
    assert server.hits("/files/loop.bin") == 31 and not (tmp_path / "loop").exists()


def test_a_session_with_something_to_merge_is_asked_through_requests_itself(server):
    """With cookies (or proxies, auth, hooks) on the session, stream_get is plain ``session.get``."""
    from reprohub.fetch.transport import new_session, stream_get

    session = new_session()
    session.cookies.set("seen", "yes", domain="127.0.0.1")
    url = server.add_file("c.bin", b"c")
    stream_get(session, url, {}, (5, 5)).close()
    stream_get(new_session(), url, {}, (5, 5)).close()
    with_cookie, without = [headers for _, path, headers in server.requests if path == "/files/c.bin"]
    assert "seen=yes" in with_cookie.get("Cookie", "") and "Cookie" not in without


def test_small_bodies_in_flight_together_hash_in_their_own_threads_and_are_counted_out(server, tmp_path):
    """While other bodies are in flight a small body is hashed in its own thread (pump.in_flight); the
    count must fall back to zero after cut bodies too, or every later download would take that path."""
    from reprohub.fetch.pump import in_flight

    bodies = {f"s{i}.bin": os.urandom((1 << 20) + i * 4099) for i in range(6)}
    urls = {name: server.add_file(name, body) for name, body in bodies.items()}
    server.inject("/files/s0.bin", Fault("truncate", after=1000))  # one of them is cut and resumed
    _assert_intact(_fetch_at_once(downloader(), urls, tmp_path), bodies, tmp_path)
    server.inject("/files/s1.bin", *[Fault("truncate", after=0) for _ in range(10)])
    with pytest.raises(TruncatedDownloadError):
        downloader().fetch(urls["s1.bin"], tmp_path / "again", progress=False)
    with in_flight() as others:
        assert others == 0


@pytest.mark.parametrize("size, others, expected", [
    (200 << 10, 0, "inline"), (2 << 20, 0, "helper"), (2 << 20, 1, "inline"),
    (20 << 20, 0, "helper, large buffers"), (20 << 20, 1, "helper, large buffers"), (None, 1, "helper, large buffers")])
def test_the_pump_for_a_body_depends_on_its_size_and_on_the_bodies_in_flight(monkeypatch, size, others, expected):
    import contextlib

    from reprohub.fetch import pump

    chosen = []
    monkeypatch.setattr(pump, "pump_inline", lambda *a, **k: chosen.append("inline"))
    monkeypatch.setattr(pump, "pump", lambda *a, **k: chosen.append(
        "helper, large buffers" if len(a) > 4 else "helper"))
    with contextlib.ExitStack() as stack:
        for _ in range(others):
            stack.enter_context(pump.in_flight())
        pump.pump_body(None, None, None, None, size, 1 << 20, False)
    assert chosen == [expected]


def test_downloads_in_parallel_threads_each_hash_their_own_body(server, tmp_path):
    bodies = {f"p{i}.bin": os.urandom(size) for i, size in enumerate([3 << 20, 13 << 20, 1 << 20, 13 << 20])}
    urls = {name: server.add_file(name, body) for name, body in bodies.items()}
    _assert_intact(_fetch_at_once(downloader(), urls, tmp_path), bodies, tmp_path)  # one session, as the Hub's


def _fetch_at_once(fetcher: Downloader, urls: dict, folder) -> dict:
    """Fetch every URL into ``folder/<name>``, each in its own thread, all at once; each sha256 by name."""
    import threading

    got = {}

    def fetch(name):
        got[name] = fetcher.fetch(urls[name], folder / name, progress=False).sha256

    threads = [threading.Thread(target=fetch, args=(name,)) for name in urls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return got


def _assert_intact(got: dict, bodies: dict, folder) -> None:
    assert got == {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
    assert all((folder / name).read_bytes() == body for name, body in bodies.items())


def test_a_forked_child_downloads_with_hashing_threads_of_its_own(server, tmp_path):
    import multiprocessing

    body = os.urandom(3 << 20)
    url = server.add_file("w.bin", body)
    downloader().fetch(url, tmp_path / "parent.bin", progress=False)  # the parent now has a hashing thread
    child = multiprocessing.get_context("fork").Process(target=_fetch_in_child, args=(url, str(tmp_path / "child.bin")))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0, "the child hung or failed (a hashing thread of the parent's is not in a fork)"
    assert (tmp_path / "child.bin").read_bytes() == body


def _fetch_in_child(url, dst):
    Downloader(policy=FAST_POLICY).fetch(url, dst, progress=False)


def test_a_failing_hash_is_raised_and_the_helper_thread_survives_it():
    import io

    from reprohub.fetch.pump import pump

    class Broken:
        def update(self, view):
            raise MemoryError("no room to hash")

    data = os.urandom(1 << 20)
    with pytest.raises(MemoryError, match="no room"):
        pump(io.BytesIO(data).readinto, io.BytesIO(), Broken(), None, 64 << 10, 4)
    out, digest = io.BytesIO(), hashlib.sha256()
    pump(io.BytesIO(data).readinto, out, digest, None, 64 << 10, 4)  # the same helper, still working
    assert out.getvalue() == data and digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_kept_buffers_never_carry_one_body_into_the_next(server, tmp_path):
    """Small bodies reuse buffers kept from the body before: a shorter body after a longer one must hold
    only its own bytes, in the inline path (< 256 KiB) and the helper-thread path (< 8 MiB)."""
    one = downloader()
    for size_long, size_short in ((200 << 10, 70 << 10), (3 << 20, (1 << 20) + 5)):
        long_url = server.add_file(f"long-{size_long}.bin", b"\xaa" * size_long)
        short_url = server.add_file(f"short-{size_short}.bin", b"\x55" * size_short)
        one.fetch(long_url, tmp_path / "long.bin", progress=False)
        got = one.fetch(short_url, tmp_path / "short.bin", progress=False)
        assert (tmp_path / "short.bin").read_bytes() == b"\x55" * size_short
        assert got.sha256 == hashlib.sha256(b"\x55" * size_short).hexdigest() and got.size == size_short


# -- the short road (fetch/direct.py) ---------------------------------------------------------------------


def test_plain_downloads_keep_one_connection_alive_and_survive_the_server_closing_it(server, tmp_path):
    import socket as socketlib

    urls = [server.add_file(f"w{i}.bin", bytes([i]) * 5000) for i in range(4)]
    d = downloader()
    for i, url in enumerate(urls[:3]):
        assert d.fetch(url, tmp_path / f"w{i}", progress=False).sha256 == hashlib.sha256(bytes([i]) * 5000).hexdigest()
    assert server.connections == 1 and d.direct is not None  # three files, one connection, no requests pool
    with server.state.lock:  # the server drops the idle connection, as hosts do after a keep-alive timeout
        for sock in list(server.state.open_sockets):
            sock.shutdown(socketlib.SHUT_RDWR)
    assert d.fetch(urls[3], tmp_path / "w3", progress=False).size == 5000  # asked once more on a fresh one
    assert server.connections == 2 and server.hits("/files/w3.bin") == 1  # the dead one carried nothing


def test_a_proxy_or_a_callers_session_takes_requests_road(server, monkeypatch):
    from reprohub.fetch.transport import new_session

    assert Downloader().direct is not None
    assert Downloader(session=new_session()).direct is None  # what a caller set up on its session is kept
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert Downloader().direct is None  # requests decides which proxy, per URL


@responses.activate
def test_a_responses_mock_sees_every_download(tmp_path):
    responses.get("http://127.0.0.1:9/w.pt", body=BODY)  # port 9: nothing listens; only the mock answers
    got = downloader().fetch("http://127.0.0.1:9/w.pt", tmp_path / "w.pt", progress=False)
    assert got.sha256 == hashlib.sha256(BODY).hexdigest() and len(responses.calls) == 1


def test_an_offline_downloader_sends_no_request_of_any_kind(server):
    url = server.add_file("w.bin", b"x")
    offline = Downloader(offline=True)
    for call in (lambda: offline.request("HEAD", url), lambda: offline.get(url), lambda: offline.fetch_into(url, io.BytesIO())):
        with pytest.raises(OfflineError):
            call()
    assert server.hits() == 0
