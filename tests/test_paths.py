"""Hub dir precedence and the cache layout: examples and Hypothesis properties."""

import contextlib
import os
from pathlib import Path

import pytest
import torch.hub
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import reprohub
from reprohub.errors import CachePathError
from reprohub.cache.layout import CacheLayout, check_file_name, source_key
from reprohub.fetch.urls import canonical_url
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


# URLs built from their parts, so Hypothesis explores hosts, paths, queries and basenames, not only noise.
segments = st.text(st.sampled_from("ab_.-%/~:?#=&x1 \\"), min_size=1, max_size=8)
urls = st.builds(
    lambda scheme, host, path, query: f"{scheme}://{host}/{'/'.join(path)}" + (f"?{query}" if query else ""),
    st.sampled_from(["http", "https", "file"]), st.sampled_from(["h", "h:8080", "127.0.0.1", "x.example"]),
    st.lists(segments, min_size=1, max_size=4), st.none() | st.sampled_from(["v=1", "X-Amz-Signature=ab", "dl=1&v=2"]),
)


@settings(max_examples=300)
@example("https://h/a/../../../etc/passwd", None)
@example("https://h/w.pt", "../w.pt")
@given(urls | st.text(max_size=120), st.none() | st.text(max_size=60))
def test_every_artifact_path_stays_inside_the_hub(url, file_name):
    layout = CacheLayout(HUB)
    try:
        path = layout.artifact_path(url, file_name)
    except CachePathError:
        return
    resolved = path.resolve()
    assert HUB.resolve() in resolved.parents and resolved.parent.parent == (HUB / "checkpoints").resolve()


@example("https://h/a_b/c/w.pt", "https://h/a/b_c/w.pt", None)  # torch.hub's folding would merge these
@example("https://one.example/x/w.pt", "https://two.example/y/w.pt", None)  # one basename, two files
@example("https://h/w.pt?v=1", "https://h/w.pt?v=2", None)
@given(urls | st.text(min_size=1, max_size=60), urls | st.text(min_size=1, max_size=60), st.none() | st.text(max_size=20))
def test_distinct_urls_never_share_a_file(url_a, url_b, name):
    assume(canonical_url(url_a) != canonical_url(url_b))  # only signing parameters may differ for one file
    layout = CacheLayout(HUB)
    try:
        a, b = layout.artifact_path(url_a, name), layout.artifact_path(url_b, name)
    except CachePathError:
        return
    assert a != b and a.parent != b.parent


@given(urls, st.sampled_from(["X-Amz-Signature=1&X-Amz-Date=2", "sig=abc&se=2030", "Expires=1&Signature=x"]))
def test_signed_variants_of_one_url_share_its_file(url, signing):
    assume("#" not in url and url.count("?") <= 1)  # a query after a fragment is no query
    layout = CacheLayout(HUB)
    signed = url + ("&" if "?" in url else "?") + signing
    try:
        assert layout.artifact_path(url) == layout.artifact_path(signed)
    except CachePathError:
        pass


@given(owners, names, owners, names, st.from_regex(r"[0-9a-f]{40}", fullmatch=True))
def test_repo_dirs_are_injective_and_inside(o1, n1, o2, n2, commit):
    layout = CacheLayout(HUB)
    a = layout.repo_dir("github", RepoRef(o1, n1), commit)
    b = layout.repo_dir("github", RepoRef(o2, n2), commit)
    assert (a == b) == ((o1, n1) == (o2, n2))
    assert HUB.resolve() in a.resolve().parents
    assert HUB.resolve() in layout.refs_file("github", RepoRef(o1, n1)).resolve().parents


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\\b", "x\x00", "w.pt.lock", "w" * 300])
def test_unsafe_file_names_are_refused(bad):
    with pytest.raises(CachePathError, match="file_name"):
        check_file_name(bad)


@given(st.text(max_size=80), st.text(max_size=80))
def test_source_keys_are_safe_and_distinct(a, b):
    assume(a.rstrip("/") != b.rstrip("/"))
    ka, kb = source_key(a), source_key(b)
    assert ka != kb and "/" not in ka and ka not in (".", "..") and not ka.startswith(".")
