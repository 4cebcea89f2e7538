"""list / help / load against a real Git-backed host: commits, cache, force_reload, offline, errors."""

import pytest
import torch

from reprohub import Hub
from reprohub.errors import (AuthError, EntrypointError, MissingDependenciesError, OfflineError, RefError,
                             SourceError)

from .conftest import FAST_POLICY, serve_repo


def test_list_help_and_hidden_helpers(hub, tiny_repo):
    assert hub.list("acme/tiny:v1") == ["tiny_mlp", "version"]
    assert "two-layer MLP" in hub.help("acme/tiny:v1", "tiny_mlp")
    assert hub.load("acme/tiny:v1", "_helper") == "hidden helper"


def test_refs_resolve_to_commits_and_each_runs_its_code(hub, tiny_repo):
    assert hub.load("acme/tiny:v1", "version") == "v1"
    assert hub.last_repo.commit == tiny_repo.v1
    assert hub.load("acme/tiny", "version") == "v2"  # default branch, from the API
    assert hub.last_repo.commit == tiny_repo.v2
    assert hub.load(f"acme/tiny:{tiny_repo.v1[:10]}", "version") == "v1"
    assert hub.load("acme/tiny:stable", "version") == "v1"


def test_two_commits_of_one_repo_in_one_process(hub, tiny_repo):
    old = hub.load("acme/tiny:v1", "tiny_mlp")
    new = hub.load("acme/tiny:main", "tiny_mlp")
    x = torch.ones(1, 3)
    assert torch.allclose(new(x), old(x) * 2)  # v2 scales by 2: each model kept its own code
    assert hub.load("acme/tiny:v1", "version") == "v1"


def test_full_commit_needs_no_api_call_beyond_the_fork_check(hub, tiny_repo, server):
    hub.load(f"acme/tiny:{tiny_repo.v1}", "version", skip_validation=True)
    assert server.hits("/api/") == 0  # the archive comes from the web route, not the rate-limited REST API
    assert server.hits(f"/acme/tiny/archive/{tiny_repo.v1}.zip") == 1
    hub.load(f"acme/tiny:{tiny_repo.v2}", "version")
    assert server.hits("/api/repos/acme/tiny/commits") == 0 and server.hits("/api/repos/acme/tiny/branches") == 1


def fork_commit(tiny_repo) -> str:
    """A commit the served repo has but no branch or tag reaches: what a fork's pull request looks like."""
    tiny_repo.branch("pr-head")
    tiny_repo.checkout("pr-head")
    sha = tiny_repo.commit({"hubconf.py": "def version():\n    return 'from a fork'\n"}, "fork")
    tiny_repo.checkout("main")
    tiny_repo.git("branch", "-D", "pr-head")
    return sha


def test_a_commit_on_no_branch_or_tag_is_refused_as_torch_hub_refuses_it(hub, tiny_repo, server):
    sha = fork_commit(tiny_repo)
    with pytest.raises(ValueError, match="Cannot find .* forked repo"):
        hub.load(f"acme/tiny:{sha}", "version")
    assert not list(hub.layout.internal.glob(f"repos/*/acme/tiny/{sha}"))  # no code of it was downloaded
    assert hub.load(f"acme/tiny:{sha}", "version", skip_validation=True) == "from a fork"
    assert hub.list(f"acme/tiny:{sha[:10]}", skip_validation=True) == ["version"]


def test_a_cached_commit_still_loads_offline_without_the_fork_check(hub, tiny_repo, server):
    from reprohub import Hub

    assert hub.load(f"acme/tiny:{tiny_repo.v1}", "version", skip_validation=True) == "v1"  # no verdict cached
    server.stop()
    offline = Hub(hub_dir=hub.hub_dir, github_api_url=server.api_url, offline=True)
    assert offline.load(f"acme/tiny:{tiny_repo.v1}", "version") == "v1"


def test_an_old_commit_of_the_default_branch_passes_and_the_verdict_is_cached(hub, tiny_repo, server):
    assert hub.load(f"acme/tiny:{tiny_repo.v1}", "version") == "v1"  # the tag v1 points at it
    tiny_repo.commit({"tinynet/__init__.py": "VERSION = 'v3'\n"}, "v3")
    assert hub.load(f"acme/tiny:{tiny_repo.v2}", "version") == "v2"  # no tip any more: in main's history
    assert server.hits("/api/repos/acme/tiny/compare/") == 1
    before = server.hits("/api/")
    hub.load(f"acme/tiny:{tiny_repo.v2}", "version", force_reload=True)
    assert server.hits("/api/") == before  # asked once per commit


def test_private_repo_archive_falls_back_to_the_api_with_the_token(tmp_path, server, tiny_repo):


    server.require_token("s3cret")
    hub = Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url, token="s3cret", policy=FAST_POLICY)
    assert hub.load(f"acme/tiny:{tiny_repo.v1}", "version") == "v1"
    assert server.hits("/acme/tiny/archive/") == 1  # the web route answered 404 (private) ...
    zipball = [h for m, p, h in server.requests if p.startswith("/api/repos/acme/tiny/zipball/")]
    assert len(zipball) == 1 and zipball[0]["Authorization"] == "Bearer s3cret"  # ... the API, with the token
    assert not any("Authorization" in h for m, p, h in server.requests if "/archive/" in p)


def test_warm_load_makes_zero_requests(hub, tiny_repo, server, weights_url):
    hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True)
    before = len(server.requests)
    model = hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True)
    assert len(server.requests) == before
    assert isinstance(model, torch.nn.Module)


def test_warm_cache_works_offline(tmp_path, tiny_repo, server, weights_url):
    online = Hub(hub_dir=tmp_path / "h", github_api_url=server.api_url, policy=FAST_POLICY)
    expected = online.load("acme/tiny:v1", "tiny_mlp", pretrained=True)(torch.ones(1, 3))
    server.stop()
    offline = Hub(hub_dir=tmp_path / "h", github_api_url=server.api_url, offline=True)
    got = offline.load("acme/tiny:v1", "tiny_mlp", pretrained=True)(torch.ones(1, 3))
    assert torch.equal(got, expected)
    with pytest.raises(OfflineError, match="acme/tiny:v9"):
        offline.load("acme/tiny:v9", "version")


def test_force_reload_follows_a_moved_branch_and_a_force_push(hub, tiny_repo):
    assert hub.load("acme/tiny:stable", "version") == "v1"
    tiny_repo.checkout("stable")
    v3 = tiny_repo.commit({"tinynet/__init__.py": "VERSION = 'v3'\n"}, "v3")
    assert hub.load("acme/tiny:stable", "version") == "v1"  # cached resolution, like torch.hub's cache
    assert hub.load("acme/tiny:stable", "version", force_reload=True) == "v3"
    assert hub.last_repo.commit == v3
    tiny_repo.reset_hard(tiny_repo.v1)  # force-push back
    assert hub.load("acme/tiny:stable", "version", force_reload=True) == "v1"


def test_deleted_ref_is_a_clear_error_on_reload(hub, tiny_repo):
    hub.load("acme/tiny:stable", "version")
    tiny_repo.delete_ref("refs/heads/stable")
    with pytest.raises(SourceError, match="'stable' of acme/tiny .*the repo exists, but not this ref"):
        hub.load("acme/tiny:stable", "version", force_reload=True)
    with pytest.raises(SourceError, match="the repo acme/nope .*no such repo") as missing:  # a distinct error
        hub.load("acme/nope:stable", "version")
    assert "not this ref" not in str(missing.value)


def test_missing_entrypoint_and_dependencies(hub, server, tmp_path, tiny_repo):
    serve_repo(server, tmp_path, "deps", {"hubconf.py": "dependencies = ['torch', 'no_such_pkg_a', 'no_such_pkg_b']\n"
                                                        "def model():\n    return 1\n"})
    with pytest.raises(MissingDependenciesError) as info:
        hub.load("acme/deps", "model")
    assert info.value.missing == ("no_such_pkg_a", "no_such_pkg_b") and isinstance(info.value, RuntimeError)
    assert "pip install no_such_pkg_a no_such_pkg_b" in str(info.value)
    with pytest.raises(EntrypointError, match="Cannot find callable nope"):
        hub.help("acme/tiny:v1", "nope")


def test_args_and_kwargs_reach_the_entrypoint(hub, server, tmp_path):
    serve_repo(server, tmp_path, "echo", {"hubconf.py": "def echo(*args, **kwargs):\n    return args, kwargs\n"})
    assert hub.load("acme/echo", "echo", 1, "two", source="github", flag=True, verbose=3) == \
        ((1, "two"), {"flag": True})


def test_unknown_repo_bad_spec_and_bad_source(hub, server):
    with pytest.raises(SourceError, match="HTTP 404"):
        hub.load("acme/nothing", "x")
    with pytest.raises(RefError):
        hub.load("acme/tiny:c:d", "x")
    with pytest.raises(ValueError, match="source"):
        hub.load("acme/tiny", "x", source="svn")


def test_auth_failures_say_whether_a_token_was_sent(tmp_path, tiny_repo, server):
    server.require_token("sekret")
    anon = Hub(hub_dir=tmp_path / "a", github_api_url=server.api_url, token="", policy=FAST_POLICY)
    with pytest.raises(AuthError, match="no token was sent") as info:
        anon.load("acme/tiny:main", "version")
    assert "sekret" not in str(info.value)
    good = Hub(hub_dir=tmp_path / "b", github_api_url=server.api_url, token="sekret", policy=FAST_POLICY)
    assert good.load("acme/tiny:main", "version") == "v2"
    assert "sekret" not in repr(good.github)
    server.set_rate_limited(True)
    with pytest.raises(AuthError, match="rate limit exhausted \\(a GITHUB_TOKEN was sent\\)"):
        good.load("acme/tiny:v1", "version", force_reload=True)


def test_local_source_runs_the_folder_as_is(hub, tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "hubconf.py").write_text("def answer():\n    return 42\n")
    assert hub.load(str(folder), "answer", source="local") == 42
    (folder / "hubconf.py").write_text("def answer():\n    return 43\n")
    assert hub.load(str(folder), "answer", source="local") == 43


def test_git_source_with_file_remote_and_bare_repo(hub, tiny_repo, tmp_path):
    import subprocess

    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(tiny_repo.path), str(bare)], check=True)
    assert hub.load(f"file://{bare}#v1", "version", source="git") == "v1"
    assert hub.last_repo.commit == tiny_repo.v1
    assert hub.load(str(bare), "version", source="git") == "v2"
    assert hub.load(f"{bare}#{tiny_repo.v1}", "version", source="git") == "v1"


def test_api_5xx_is_retried_and_a_dead_host_is_a_clear_error(hub, tiny_repo, server):
    from reprohub.testing.server import Fault

    server.inject("/api/repos/acme/tiny/commits/main", Fault("status", 502), Fault("status", 503))
    assert hub.load("acme/tiny", "version") == "v2"  # no ref: the API names the default branch and its commit
    assert server.hits("/api/repos/acme/tiny/commits/main") == 3
    server.inject("/acme/tiny/archive/v1.zip", Fault("status", 502))
    assert hub.load("acme/tiny:v1", "version") == "v1"  # a tag: its archive names the commit, retried the same
    assert server.hits("/acme/tiny/archive/v1.zip") == 2
    server.stop()  # its port now refuses connections: tried for ~1.75 s, then known to be gone
    with pytest.raises(ConnectionError, match="an answer from .*refused the connection 4 times"):
        hub.load("acme/tiny", "version", force_reload=True)
    with pytest.raises(ConnectionError, match="an answer from .*archive/main.zip.*earlier in this process"):
        hub.load("acme/tiny:main", "version", force_reload=True)


def test_the_loaded_commit_is_reported_on_stderr_unless_quiet(hub, tiny_repo, capsys):
    hub.load("acme/tiny:v1", "version")
    out, err = capsys.readouterr()
    assert out == "" and f"reprohub: acme/tiny:v1 is commit {tiny_repo.v1}" in err
    hub.load("acme/tiny:v1", "version", verbose=False)
    assert capsys.readouterr().err == ""


def test_a_branch_or_tag_is_resolved_by_its_archive_with_no_api_call(hub, tiny_repo, server):
    assert hub.load("acme/tiny:v1", "version") == "v1"
    assert hub.last_repo.commit == tiny_repo.v1  # the commit is still resolved and pinned
    assert [p for _, p, _ in server.requests] == ["/acme/tiny/archive/v1.zip"]  # one request, as torch.hub's
    assert hub.load("acme/tiny:v1", "version") == "v1" and server.hits() == 1  # remembered: no request at all


def test_a_host_whose_archives_name_no_commit_is_asked_through_its_api(hub, tiny_repo, server):
    server.set_archive_comments(False)
    assert hub.load("acme/tiny:stable", "version") == "v1" and hub.last_repo.commit == tiny_repo.v1
    assert server.hits("/api/repos/acme/tiny/commits/stable") == 1
    assert server.hits(f"/acme/tiny/archive/{tiny_repo.v1}.zip") == 1  # then its commit's archive, as before
