"""Crash safety by boot id: a file written without a flush in an earlier boot is hashed again before use."""

import os

import pytest

from reprohub.cache.store import read_file_record
from reprohub.fetch import durability
from reprohub.fetch.fsutil import read_json
from reprohub.refs import parse_ref


def damage_keeping_size_and_mtime(path):
    """What a power loss can leave: the right size and mtime, other bytes (the data never reached the disk)."""
    st = os.stat(path)
    path.write_bytes(b"\0" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_an_unflushed_file_from_an_earlier_boot_is_rechecked_and_fetched_again(server, hub, boot, monkeypatch):
    body = os.urandom(3 << 20)
    url = server.add_file("w.bin", body)
    fsynced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(os.fstat(fd).st_size), real_fsync(fd))[1])
    got = hub.fetch_artifact(url, progress=False)
    assert len(body) not in fsynced  # the download itself was not flushed ...
    assert read_file_record(got.path)["boot_id"] == "boot-a"  # ... its record names the boot instead

    damage_keeping_size_and_mtime(got.path)
    boot.id = "boot-b"  # the power came back
    again = hub.fetch_artifact(url, progress=False)
    assert again.path.read_bytes() == body and server.hits("/files/w.bin") == 2  # caught, fetched again


def test_an_intact_file_is_confirmed_once_and_then_trusted(server, hub, boot, monkeypatch):
    from reprohub.cache import store

    url = server.add_file("w.bin", b"intact bytes")
    got = hub.fetch_artifact(url, progress=False)
    boot.id = "boot-b"
    assert hub.fetch_artifact(url, progress=False).sha256 == got.sha256  # re-hashed once ...
    assert "boot_id" not in read_file_record(got.path)  # ... and confirmed durable
    monkeypatch.setattr(store, "sha256_file", lambda p: pytest.fail("a confirmed file is not hashed again"))
    boot.id = "boot-c"
    assert hub.fetch_artifact(url, progress=False).sha256 == got.sha256
    assert server.hits("/files/w.bin") == 1


def test_a_tree_extracted_in_an_earlier_boot_is_rechecked_before_its_code_runs(hub, tiny_repo, boot):
    assert hub.load("acme/tiny:v1", "version") == "v1"
    init = hub.last_repo.path / "tinynet" / "__init__.py"
    damage_keeping_size_and_mtime(init)
    boot.id = "boot-b"
    assert hub.load("acme/tiny:v1", "version") == "v1"
    assert init.read_text() == "VERSION = 'v1'\n"


@pytest.fixture
def fsynced(monkeypatch):
    """The sizes of the files flushed with ``os.fsync`` during the test (folders show as their size too)."""
    sizes = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (sizes.append(os.fstat(fd).st_size), real_fsync(fd))[1])
    return sizes


def test_a_cold_load_with_a_boot_id_flushes_nothing(hub, tiny_repo, boot, fsynced):
    assert hub.load("acme/tiny", "version") == "v2"  # ref resolved, archive fetched, tree extracted, records written
    assert fsynced == []
    assert read_json(hub.layout.repo_manifest("github", parse_ref("acme/tiny"), tiny_repo.v2))["boot_id"] == "boot-a"


def test_without_a_boot_id_every_download_is_flushed_as_before(server, hub, tiny_repo, fsynced):
    durability.set_boot_id_source(lambda: None)
    try:
        body = os.urandom(1 << 20)
        got = hub.fetch_artifact(server.add_file("w.bin", body), progress=False)
        assert len(body) in fsynced and "boot_id" not in read_file_record(got.path)
        fsynced.clear()
        hub.load("acme/tiny:v1", "version")
        model_py = (hub.last_repo.path / "tinynet" / "model.py").stat().st_size
        assert model_py in fsynced  # extracted files too, as no boot id vouches for them
    finally:
        durability.set_boot_id_source(None)


def test_download_url_to_file_flushes_only_when_asked(server, hub, tmp_path, fsynced):
    body = os.urandom(1 << 20)
    url = server.add_file("w.bin", body)
    hub.download_url_to_file(url, str(tmp_path / "plain.bin"), progress=False)  # as torch.hub: atomic, not flushed
    assert fsynced == []
    hub.download_url_to_file(url, str(tmp_path / "durable.bin"), progress=False, durable=True)
    assert len(body) in fsynced and (tmp_path / "durable.bin").read_bytes() == body
