"""Shared read-only hub caches (issue 39, part 2): used in place, never written, verified, and what they miss
lands in the user's own cache; cache files follow the umask."""

from __future__ import annotations

import logging
import os
import stat

import pytest

from reprohub import Hub

from .conftest import run_locked
from .test_plugin import TEST_TINY


def _filled(tmp_path, server, weights_url):
    """A hub dir holding the tiny repo at v1 and the weights, as an admin fills a cluster's cache."""
    hub = Hub(hub_dir=tmp_path / "fill", github_api_url=server.api_url)
    repo = hub.resolve("acme/tiny:v1", trust_repo=True, verbose=False)
    hub.fetch_artifact(weights_url, progress=False)
    return tmp_path / "fill", repo


def test_a_read_only_shared_cache_serves_files_and_trees_in_place_with_no_request(
        tmp_path, server, tiny_repo, weights_url, read_only_folder, monkeypatch):
    filled, repo = _filled(tmp_path, server, weights_url)
    shared = read_only_folder(filled)
    monkeypatch.setenv("REPROHUB_SHARED_CACHE", os.pathsep.join([str(tmp_path / "absent"), str(shared)]))
    before = len(server.requests)
    hub = Hub(hub_dir=tmp_path / "own", github_api_url=server.api_url)
    got = hub.fetch_artifact(weights_url, progress=False)
    assert shared in got.path.parents and got.sha256
    state = hub.load_state_dict_from_url(weights_url, progress=False)
    assert set(state) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    tree = hub.resolve(f"acme/tiny:{repo.commit}", trust_repo=True, verbose=False, skip_validation=True)
    assert shared in tree.path.parents and (tree.path / "hubconf.py").is_file()
    assert tree.tree_sha256 == repo.tree_sha256
    assert len(server.requests) == before
    assert not (tmp_path / "own" / "checkpoints").exists()


def test_a_damaged_shared_file_is_named_and_never_used_and_the_own_cache_gets_a_good_one(
        tmp_path, server, tiny_repo, weights_url, monkeypatch, caplog):
    filled, _ = _filled(tmp_path, server, weights_url)
    (shared_file,) = (filled / "checkpoints").rglob("tiny-weights.pt")
    shared_file.write_bytes(b"not weights")  # a shared copy damaged after it was recorded
    monkeypatch.setenv("REPROHUB_SHARED_CACHE", str(filled))
    with caplog.at_level(logging.WARNING, logger="reprohub"):
        got = Hub(hub_dir=tmp_path / "own", github_api_url=server.api_url).fetch_artifact(weights_url, progress=False)
    assert (tmp_path / "own") in got.path.parents and got.size > len(b"not weights")
    assert f"shared cache: {shared_file} no longer matches its record; not used" in caplog.text


def test_what_the_shared_cache_lacks_lands_in_the_own_cache(tmp_path, server, weights_url, monkeypatch):
    empty = tmp_path / "shared"
    empty.mkdir()
    monkeypatch.setenv("REPROHUB_SHARED_CACHE", str(empty))
    got = Hub(hub_dir=tmp_path / "own").fetch_artifact(weights_url, progress=False)
    assert (tmp_path / "own") in got.path.parents
    assert not any(empty.iterdir())


@pytest.mark.slow
def test_a_locked_test_runs_from_a_read_only_shared_cache_with_no_request_and_no_write(
        pytester, server, tiny_repo, weights_url, read_only_folder, monkeypatch, tmp_path):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_tiny=TEST_TINY)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "admin"))
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    shared = read_only_folder(tmp_path / "admin" / "hub")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "user"))
    monkeypatch.setenv("REPROHUB_SHARED_CACHE", str(shared))
    before = len(server.requests)
    run_locked(pytester).assert_outcomes(passed=1)
    assert len(server.requests) == before
    assert not (tmp_path / "user" / "hub" / "checkpoints").exists()


@pytest.mark.parametrize("umask, group_writes", [(0o002, True), (0o022, False)])
def test_cache_files_and_folders_follow_the_umask(tmp_path, server, tiny_repo, weights_url, umask, group_writes):
    """torch.hub writes its downloads 0600 (pytorch/pytorch#81297); a group's shared cache needs the umask's modes."""
    before = os.umask(umask)
    try:
        filled, repo = _filled(tmp_path, server, weights_url)
    finally:
        os.umask(before)
    (weights,) = (filled / "checkpoints").rglob("tiny-weights.pt")
    made = [weights, repo.path, repo.path / "hubconf.py", repo.path.with_suffix(".lock")]  # the weights' lock was
    assert not weights.with_name(weights.name + ".lock").exists()  # their partial, now the file itself
    for path in made:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert bool(mode & stat.S_IWGRP) == group_writes, (path, oct(mode))
        assert mode & stat.S_IRGRP, (path, oct(mode))


def test_a_filesystem_that_refuses_flock_is_named_with_the_mount_option(tmp_path, monkeypatch):
    """A Lustre mount with noflock answers ENOSYS: an error that says so, never a lock silently not taken."""
    import errno
    import fcntl

    from reprohub.errors import LockUnsupportedError
    from reprohub.fetch import locks

    def refuse(fd, operation):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", refuse)
    with pytest.raises(LockUnsupportedError, match="Lustre: -o flock") as err:
        with locks.file_lock(tmp_path / "w.pt.lock", "writing w.pt"):
            pass
    assert "w.pt.lock" in err.value.expected
