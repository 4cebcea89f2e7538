"""The reviewer years later: a dead origin fails fast and points to the bundle; a vanished commit is named."""

import socket

import pytest

from reprohub import Hub
from reprohub.errors import DownloadError, SourceError
from reprohub.fetch.download import DownloadPolicy
from reprohub.lock.lockfile import ArtifactPin, Lockfile, RepoPin
from reprohub.lock.session import LockSession
from reprohub.testing.server import HubServer


def test_a_stopped_origin_fails_three_locked_loads_at_once_with_the_bundle_hint(tmp_path):
    with HubServer() as origin:
        urls = [origin.add_file(f"w{i}.pt", b"weights %d" % i) for i in range(3)]
    # the server is stopped: its port refuses connections
    lock = Lockfile(artifacts={u: ArtifactPin(u, "a" * 64, 9) for u in urls})
    hub = Hub(hub_dir=tmp_path / "hub", pins=LockSession(lock, "hub.lock"), policy=DownloadPolicy())  # 5 retries
    slept = []
    hub.downloader._sleep = slept.append
    for url in urls:
        with pytest.raises(DownloadError, match=r"refused the connection twice.*pinned in the lock.*REPROHUB_MIRROR"):
            hub.fetch_artifact(url, progress=False)
    assert slept == [0.2]  # one quick second try for the first load; the host is then known to be gone


def test_a_name_that_does_not_resolve_is_not_retried_and_is_remembered(tmp_path, monkeypatch):
    asked = []
    real = socket.getaddrinfo

    def no_such_name(host, *args, **kwargs):
        if host == "weights.origin.invalid":
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)  # no lookup leaves this machine
    hub = Hub(hub_dir=tmp_path / "hub", policy=DownloadPolicy())
    slept = []
    hub.downloader._sleep = slept.append
    for name in ("a.pt", "b.pt"):
        with pytest.raises(DownloadError, match="weights.origin.invalid does not resolve"):
            hub.fetch_artifact(f"http://weights.origin.invalid/{name}", progress=False)
    assert asked == ["weights.origin.invalid"] and slept == []


def test_timeouts_and_5xx_keep_their_retries(server, tmp_path):
    from reprohub.testing.server import Fault

    url = server.add_file("w.pt", b"fine in the end")
    server.inject("/files/w.pt", Fault("status", status=503), Fault("status", status=502))
    hub = Hub(hub_dir=tmp_path / "hub", policy=DownloadPolicy(backoff=0.01))
    hub.downloader._sleep = lambda s: None
    assert hub.fetch_artifact(url, progress=False).size == len(b"fine in the end")


def test_a_force_pushed_pin_is_named_with_both_ways_back(server, tiny_repo, tmp_path):
    spec = "acme/tiny:main"
    recorder = Hub(hub_dir=tmp_path / "a", github_api_url=server.api_url)
    pinned = recorder.resolve(spec, verbose=False)
    assert pinned.commit == tiny_repo.v2
    tiny_repo.reset_hard(tiny_repo.v1)  # main force-pushed back; v2 is gone from the host
    tiny_repo.git("reflog", "expire", "--expire=now", "--all")
    tiny_repo.git("gc", "--prune=now", "-q")
    server.state.zips.clear()
    lock = Lockfile({spec: RepoPin(spec, server.api_url, pinned.commit, pinned.tree_sha256)})
    hub = Hub(hub_dir=tmp_path / "b", github_api_url=server.api_url, pins=LockSession(lock, "hub.lock"))
    with pytest.raises(SourceError) as info:
        hub.resolve(spec, verbose=False)
    text = str(info.value)
    assert f"commit {tiny_repo.v2} of acme/tiny ({spec})" in text and "force-pushed" in text
    assert "REPROHUB_MIRROR" in text and "--hub-accept" in text and "check the spelling" not in text


def test_a_repo_that_does_not_exist_still_says_check_the_spelling(server, tmp_path):
    hub = Hub(hub_dir=tmp_path / "h", github_api_url=server.api_url)
    with pytest.raises(SourceError, match="check the spelling"):
        hub.resolve("acme/no-such-repo:" + "f" * 40, verbose=False, skip_validation=True)
