"""Hub dir precedence and the cache layout: examples and Hypothesis properties."""

import contextlib
import os
from pathlib import Path

import pytest
import torch.hub
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import reprohub
from reprohub.errors import CachePathError
from reprohub.cache.layout import CacheLayout, check_file_name, source_key
from reprohub.refs import RepoRef

from .test_refs import names, owners

HUB = Path("/tmp/reprohub-prop-hub")
env_values = st.none() | st.just("") | st.sampled_from(["/srv/th", "~/th", "/a b/c"])


def _apply(values: dict) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextlib.contextmanager
def environment(**values):
    """Set (or, for None, unset) environment variables for the block; Hypothesis cannot use monkeypatch."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _apply(values)
        yield
    finally:
        _apply(saved)


@given(env_values, env_values, st.none() | st.sampled_from(["/set/dir", "~/set"]))
def test_precedence_for_every_combination(torch_home, xdg, set_to):
    with environment(TORCH_HOME=torch_home, XDG_CACHE_HOME=xdg):
        reprohub.set_dir(set_to)
        try:
            got = reprohub.get_dir()
        finally:
            reprohub.set_dir(None)
    if set_to:
        expected = os.path.expanduser(set_to)
    elif torch_home:
        expected = os.path.join(os.path.expanduser(torch_home), "hub")
    elif xdg:
        expected = os.path.join(os.path.expanduser(xdg), "torch", "hub")
    else:
        expected = os.path.expanduser("~/.cache/torch/hub")
    assert got == expected and isinstance(got, str) and os.path.isabs(got)


@given(env_values.filter(bool), env_values.filter(bool))
def test_same_dir_as_torch_hub_where_torch_is_correct(torch_home, xdg):
    with environment(TORCH_HOME=torch_home, XDG_CACHE_HOME=xdg):
        assert reprohub.get_dir() == torch.hub.get_dir()
    with environment(TORCH_HOME=None, XDG_CACHE_HOME=xdg):
        assert reprohub.get_dir() == torch.hub.get_dir()


def test_set_dir_accepts_pathlike_and_expands_user():
    reprohub.set_dir(Path("~") / "x")
    assert reprohub.get_dir() == os.path.expanduser("~/x")


@settings(max_examples=300)
@given(st.text(max_size=120), st.none() | st.text(max_size=60))
def test_every_artifact_path_stays_inside_the_hub(url, file_name):
    layout = CacheLayout(HUB)
    try:
        path = layout.artifact_path(url, file_name)
    except CachePathError:
        return
    resolved = path.resolve()
    assert HUB.resolve() in resolved.parents and resolved.parent.parent == (HUB / "checkpoints").resolve()


@given(st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=60), st.text(min_size=1, max_size=20))
def test_distinct_urls_never_share_a_file(url_a, url_b, name):
    assume(url_a != url_b)
    layout = CacheLayout(HUB)
    try:
        a, b = layout.artifact_path(url_a, name), layout.artifact_path(url_b, name)
    except CachePathError:
        return
    assert a != b


@given(owners, names, owners, names, st.from_regex(r"[0-9a-f]{40}", fullmatch=True))
def test_repo_dirs_are_injective_and_inside(o1, n1, o2, n2, commit):
    layout = CacheLayout(HUB)
    a = layout.repo_dir("github", RepoRef(o1, n1), commit)
    b = layout.repo_dir("github", RepoRef(o2, n2), commit)
    assert (a == b) == ((o1, n1) == (o2, n2))
    assert HUB.resolve() in a.resolve().parents
    assert HUB.resolve() in layout.refs_file("github", RepoRef(o1, n1)).resolve().parents


def test_torch_hub_folder_collisions_cannot_happen_here():
    layout = CacheLayout(HUB)
    folders = {layout.refs_file("github", RepoRef(*spec)) for spec in [("o", "r"), ("o", "r_c")]}
    assert len(folders) == 2  # torch.hub: o/r:c_d, o/r:c/d and o/r_c:d all become o_r_c_d


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "x\x00", "w.pt.lock", "w" * 300])
def test_unsafe_file_names_are_refused(bad):
    with pytest.raises(CachePathError, match="file_name"):
        check_file_name(bad)


@given(st.text(max_size=80), st.text(max_size=80))
def test_source_keys_are_safe_and_distinct(a, b):
    assume(a.rstrip("/") != b.rstrip("/"))
    ka, kb = source_key(a), source_key(b)
    assert ka != kb and "/" not in ka and ka not in (".", "..") and not ka.startswith(".")
