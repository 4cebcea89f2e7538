"""A locked cold load starts the downloads its lock already knows while the repo archive downloads.

The proof is the host's: the archive's answer is *held* until both weight files have been asked for
(``Fault("hold")``), so a loader that waits for the archive before asking for weights makes the hold
run out (``server.held`` says which happened) -- no timing is asserted.
"""

import hashlib
import io

import pytest
import torch

from reprohub import Hub
from reprohub.errors import HashMismatchError, HTTPStatusError
from reprohub.lock.lockfile import Lockfile
from reprohub.lock.session import LockSession
from reprohub.testing.server import Fault

from .conftest import FAST_POLICY, serve_repo

HUBCONF = '''
import torch

dependencies = ["torch"]


def two(pretrained=True):
    """Two weight files, as a detector with a backbone and a head."""
    if not pretrained:
        return 0
    a = torch.hub.load_state_dict_from_url("{a}", progress=False)
    b = torch.hub.load_state_dict_from_url("{b}", progress=False)
    return a["w"].numel() + b["w"].numel()
'''


def _weights(n: int) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(n, dtype=torch.float32)}, buf)
    return buf.getvalue()


@pytest.fixture
def two_files(server, tmp_path):
    """acme/two, whose entrypoint downloads two weight files; returns (repo, url_a, url_b)."""
    a, b = server.add_file("backbone.pt", _weights(1000)), server.add_file("head.pt", _weights(10))
    repo = serve_repo(server, tmp_path, "acme/two", {"hubconf.py": HUBCONF.format(a=a, b=b)})
    return repo, a, b


def _hub(tmp_path, server, session, name):
    hub = Hub(hub_dir=tmp_path / name, github_api_url=server.api_url, pins=session, policy=FAST_POLICY)
    hub.recorder.listeners.append(session.observe)
    return hub


def _record(tmp_path, server):
    path = tmp_path / "hub.lock"
    session = LockSession(Lockfile.read(path), str(path), update=True)
    assert _hub(tmp_path, server, session, "recording").load("acme/two:main", "two") == 1010
    session.result().write(path)
    return path


def _check(tmp_path, server, lock_path, name="ci"):
    session = LockSession(Lockfile.read(lock_path), str(lock_path))
    return session, _hub(tmp_path, server, session, name)


def _hold_archive(server, repo, *urls, delay=8.0):
    """Hold the archive's answer until the weights are asked for (``delay``: where they cannot be, how long
    the test waits to show it; where they can, a slow machine's margin)."""
    paths = tuple("/files/" + u.rsplit("/", 1)[1] for u in urls)
    server.inject(f"/acme/two/archive/{repo.head()}.zip", Fault("hold", until=paths, delay=delay))


def test_recording_names_what_each_repo_downloads_and_the_version_does_not_follow_the_content(server, tmp_path,
                                                                                               two_files):
    _repo, a, b = two_files
    text = _record(tmp_path, server).read_text()
    assert 'version = "2.3"' in text
    assert f'artifacts = [\n    "{a}",\n    "{b}",\n]' in text  # reviewable: one URL a line, sorted
    lock = Lockfile.loads(text)
    lock.repos = {k: type(p)(p.spec, p.host, p.commit, p.tree_sha256) for k, p in lock.repos.items()}
    assert 'version = "2.3"' in lock.dumps() and "artifacts = [" not in lock.dumps()  # one version line, once


def test_a_locked_cold_load_asks_for_its_weights_before_the_archive_has_arrived(server, tmp_path, two_files):
    repo, a, b = two_files
    lock = _record(tmp_path, server)
    _hold_archive(server, repo, a, b)
    _session, hub = _check(tmp_path, server, lock)
    assert hub.load("acme/two:main", "two") == 1010
    assert server.held == [(f"/acme/two/archive/{repo.head()}.zip", True)]  # both weights asked while it was held
    assert server.full_downloads("/files/backbone.pt") == 2 and server.full_downloads("/files/head.pt") == 2
    assert sorted(u.url for u in hub.recorder.artifacts()) == [a, b]  # used because code asked, not prefetched


def test_without_prefetch_the_weights_wait_for_the_archive(server, tmp_path, two_files, monkeypatch):
    """The same load with REPROHUB_PREFETCH=0: the hold runs out -- the test above can fail."""
    repo, a, b = two_files
    lock = _record(tmp_path, server)
    monkeypatch.setenv("REPROHUB_PREFETCH", "0")
    _hold_archive(server, repo, a, b, delay=1.0)
    _session, hub = _check(tmp_path, server, lock)
    assert hub.load("acme/two:main", "two") == 1010
    assert server.held == [(f"/acme/two/archive/{repo.head()}.zip", False)]


def test_recording_and_unlocked_loads_never_prefetch(server, tmp_path, two_files):
    repo, a, b = two_files
    lock = _record(tmp_path, server)
    _hold_archive(server, repo, a, b, delay=1.0)
    session = LockSession(Lockfile.read(lock), str(lock), update=True)  # re-recording learns digests anew
    assert _hub(tmp_path, server, session, "again").load("acme/two:main", "two") == 1010
    assert server.held == [(f"/acme/two/archive/{repo.head()}.zip", False)]


def test_a_prefetched_file_is_not_a_use_but_what_a_used_repo_downloads_is_kept_by_a_prune(server, tmp_path, two_files):
    repo, a, b = two_files
    lock = _record(tmp_path, server)
    session, hub = _check(tmp_path, server, lock)
    assert hub.load("acme/two:main", "two", pretrained=False) == 0
    hub.prefetcher.wait(hub.layout.artifact_path(a, "backbone.pt"))
    hub.prefetcher.wait(hub.layout.artifact_path(b, "head.pt"))
    assert hub.recorder.artifacts() == [] and session.touched["artifacts"] == set()
    # the repo was used, and the lock says its entrypoints download both: a prune must not unpin them (another
    # entrypoint, or a warm machine where the code finds its file on disk, asks for nothing)
    assert session.unused()["artifacts"] == []
    unrelated = LockSession(Lockfile.read(lock), str(lock))
    assert unrelated.unused()["artifacts"] == [a, b]  # no test used the repo: they are unused


def test_bytes_that_differ_from_the_pin_are_never_cached_and_the_loads_own_request_raises(server, tmp_path,
                                                                                           two_files):
    repo, a, b = two_files
    lock = _record(tmp_path, server)
    server.add_file("head.pt", _weights(11))  # the host now serves other bytes for a pinned URL
    session, hub = _check(tmp_path, server, lock)
    with pytest.raises(HashMismatchError, match="head.pt"):
        hub.load("acme/two:main", "two")
    assert not hub.layout.artifact_path(b, "head.pt").exists()
    assert hub.layout.artifact_path(a, "backbone.pt").is_file()  # the good one was prefetched and kept


def test_a_prefetch_that_fails_leaves_the_error_to_the_loads_own_request(server, tmp_path, two_files):
    repo, a, b = two_files
    lock = _record(tmp_path, server)
    del server.state.files["head.pt"]
    _session, hub = _check(tmp_path, server, lock)
    with pytest.raises(HTTPStatusError, match="404") as failure:
        hub.load("acme/two:main", "two")
    assert "pinned" in str(failure.value)  # the usual way back for a pinned item
    assert server.hits("/files/head.pt") == 2 + 1  # recorded once, prefetched once, asked once more by the code


def test_repo_artifact_lists_drop_urls_the_lock_no_longer_pins(server, tmp_path, two_files):
    _repo, a, b = two_files
    lock = Lockfile.read(_record(tmp_path, server))
    assert lock.without({"artifacts": {a}}).repos["acme/two:main"].artifacts == (b,)
    lock.artifacts.pop(b)
    assert Lockfile().merged(lock).repos["acme/two:main"].artifacts == (a,)


def test_xdist_workers_that_saw_different_downloads_of_one_repo_keep_both(server, tmp_path, two_files):
    _repo, a, b = two_files
    path = _record(tmp_path, server)
    recorded = Lockfile.read(path)
    pin = recorded.repos["acme/two:main"]
    controller = LockSession(Lockfile(), str(path), update=True)
    for url in (a, b):  # each worker's export names only what its tests downloaded
        worker = LockSession(Lockfile(), str(path), update=True)
        worker.recorded.repos[pin.spec] = type(pin)(pin.spec, pin.host, pin.commit, pin.tree_sha256, (url,))
        controller.absorb(worker.export())
    assert controller.recorded.repos[pin.spec].artifacts == (a, b)


def test_a_malformed_artifacts_list_is_refused_with_its_line():
    from reprohub.errors import LockfileError

    text = ('version = "2.1"\n[repos."a/b"]\nartifacts = "https://h/w.pt"\ncommit = "' + "f" * 40
            + '"\nhost = "https://h"\ntree_sha256 = "v2:' + "0" * 64 + '"\n')
    with pytest.raises(LockfileError, match="artifacts as a list of http\\(s\\) URLs.* line 2"):
        Lockfile.loads(text)
    with pytest.raises(LockfileError, match="artifacts as a list"):
        Lockfile.loads(text.replace('"https://h/w.pt"', '["file:///etc/passwd"]'))


def test_prefetched_weights_are_the_pinned_bytes(server, tmp_path, two_files):
    repo, a, b = two_files
    lock = _record(tmp_path, server)
    _session, hub = _check(tmp_path, server, lock)
    hub.load("acme/two:main", "two")
    pins = Lockfile.read(lock).artifacts
    for url, name in ((a, "backbone.pt"), (b, "head.pt")):
        assert hashlib.sha256(hub.layout.artifact_path(url, name).read_bytes()).hexdigest() == pins[url].sha256


SILERO_LIKE = '''
import os

import torch

dependencies = ["torch"]


def vad():
    """silero: torch.hub.download_url_to_file into the repo's own folder, skipped when the file is there."""
    target = os.path.join(os.path.dirname(__file__), "files", "vad.jit")
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        torch.hub.download_url_to_file("{url}", target, progress=False)
    with open(target, "rb") as f:
        return f.read()
'''


def test_a_download_url_to_file_target_is_prefetched_and_stays_pinned_on_a_warm_machine(server, tmp_path):
    url = server.add_file("vad.jit", b"VAD" * 1000)
    repo = serve_repo(server, tmp_path, "acme/vad", {"hubconf.py": SILERO_LIKE.format(url=url)})
    path = tmp_path / "hub.lock"
    session = LockSession(Lockfile(), str(path), update=True)
    assert _hub(tmp_path, server, session, "recording").load("acme/vad:main", "vad") == b"VAD" * 1000
    session.result().write(path)
    assert Lockfile.read(path).repos["acme/vad:main"].artifacts == (url,)  # what a locked cold load starts early

    server.inject(f"/acme/vad/archive/{repo.head()}.zip", Fault("hold", until=("/files/vad.jit",), delay=8.0))
    _session, hub = _check(tmp_path, server, path)
    assert hub.load("acme/vad:main", "vad") == b"VAD" * 1000
    assert server.held == [(f"/acme/vad/archive/{repo.head()}.zip", True)]  # asked for while the archive waited
    assert server.full_downloads("/files/vad.jit") == 2  # recording, then the prefetch: the target is a copy

    warm = LockSession(Lockfile.read(path), str(path), update=True)  # the file is in the repo's folder now
    assert _hub(tmp_path, server, warm, "ci").load("acme/vad:main", "vad") == b"VAD" * 1000
    assert warm.touched["artifacts"] == set() and warm.unused()["artifacts"] == []  # a prune keeps the pin
