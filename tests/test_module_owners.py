"""The map of installed distributions by module is kept in the hub dir between processes (issue 41, goal 5),
and recomputed whenever what is installed changes."""

from __future__ import annotations

import json
import sys
from importlib import metadata

import pytest

from reprohub.cache.layout import CacheLayout, get_dir
from reprohub.golden import owners
from reprohub.golden.environment import imported_distributions


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    """A fresh process's view (no map in memory) with one more site folder holding ``fakepkg``."""
    site = tmp_path / "site"
    dist = site / "fakepkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    (dist / "top_level.txt").write_text("fakemod\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    owners.module_owners.cache_clear()
    yield dist
    owners.module_owners.cache_clear()


def _computed_again(monkeypatch) -> list[int]:
    calls = []
    real = metadata.packages_distributions

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(metadata, "packages_distributions", counted)
    return calls


def test_the_map_is_read_back_while_nothing_installed_changed(fresh, monkeypatch):
    first = owners.module_owners()
    assert first["fakemod"] == ["fakepkg"] and CacheLayout(get_dir()).module_owners.is_file()
    calls = _computed_again(monkeypatch)
    owners.module_owners.cache_clear()
    assert owners.module_owners() == first and calls == []  # read from the hub dir, not computed
    assert imported_distributions(["fakemod.sub", "json"]) == ["fakepkg"]


def test_an_install_or_an_upgrade_computes_it_again(fresh, monkeypatch, tmp_path):
    owners.module_owners()
    calls = _computed_again(monkeypatch)
    (fresh / "top_level.txt").write_text("fakemod\nothermod\n")  # an upgrade that adds a module
    owners.module_owners.cache_clear()
    assert owners.module_owners()["othermod"] == ["fakepkg"] and calls == [1]
    added = tmp_path / "site" / "second-2.0.dist-info"
    added.mkdir()
    (added / "METADATA").write_text("Metadata-Version: 2.1\nName: second\nVersion: 2.0\n")
    (added / "top_level.txt").write_text("fakemod\n")  # a second distribution in the same namespace
    owners.module_owners.cache_clear()
    assert sorted(owners.module_owners()["fakemod"]) == ["fakepkg", "second"] and calls == [1, 1]


def test_a_damaged_or_foreign_file_is_computed_again_and_replaced(fresh, monkeypatch):
    kept = CacheLayout(get_dir()).module_owners
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({"fingerprint": owners.installed_fingerprint(), "owners": ["not", "a", "map"]}))
    calls = _computed_again(monkeypatch)
    assert owners.module_owners()["fakemod"] == ["fakepkg"] and calls == [1]
    assert json.loads(kept.read_text())["owners"]["fakemod"] == ["fakepkg"]


def test_a_hub_dir_that_cannot_be_written_only_means_it_is_not_kept(fresh, monkeypatch):
    blocker = CacheLayout(get_dir()).module_owners.parent
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where the folder would be")
    assert owners.module_owners()["fakemod"] == ["fakepkg"]
