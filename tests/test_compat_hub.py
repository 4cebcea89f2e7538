"""The same scenarios through torch.hub (pointed at the test host) and reprohub give the same results."""

import pytest
import torch
import torch.hub

import reprohub

from .conftest import serve_repo


@pytest.fixture
def torch_hub(tmp_path, server, monkeypatch):
    """torch.hub with its archive URLs pointed at the test host and its own cache."""
    monkeypatch.setattr(torch.hub, "_git_archive_link",
                        lambda owner, name, ref: f"{server.api_url}/repos/{owner}/{name}/zipball/{ref}")
    torch.hub.set_dir(str(tmp_path / "torch-hub"))
    yield torch.hub
    torch.hub._hub_dir = None


@pytest.fixture
def ours(server, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    return reprohub


ARGS = dict(trust_repo=True, skip_validation=True)


def test_same_entrypoints_and_docstrings(torch_hub, ours, tiny_repo):
    assert ours.list("acme/tiny:v1", **ARGS) == torch_hub.list("acme/tiny:v1", **ARGS)
    assert ours.help("acme/tiny:v1", "tiny_mlp", **ARGS) == torch_hub.help("acme/tiny:v1", "tiny_mlp", **ARGS)


def test_bit_identical_outputs_of_seeded_models(torch_hub, ours, tiny_repo, weights_url):
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(3))
    theirs = torch_hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True, **ARGS)(x)
    mine = ours.load("acme/tiny:v1", "tiny_mlp", pretrained=True, **ARGS)(x)
    assert torch.equal(theirs, mine)


def assert_same_error(pattern, *calls):
    """Every call raises a RuntimeError matching ``pattern`` (torch.hub's type and words)."""
    for call in calls:
        with pytest.raises(RuntimeError, match=pattern):
            call()


def test_same_errors_for_missing_entrypoints(torch_hub, ours, tiny_repo):
    assert_same_error("Cannot find callable nope in hubconf",
                      lambda: torch_hub.load("acme/tiny:v1", "nope", **ARGS),
                      lambda: ours.load("acme/tiny:v1", "nope", **ARGS))


def test_same_errors_for_missing_dependencies(torch_hub, ours, server, tmp_path):
    serve_repo(server, tmp_path, "deps", {"hubconf.py": "dependencies = ['nope_a', 'nope_b']\ndef m():\n    return 1\n"})
    assert_same_error("Missing dependencies: nope_a, nope_b",
                      lambda: torch_hub.load("acme/deps:main", "m", **ARGS),
                      lambda: ours.load("acme/deps:main", "m", **ARGS))


def test_torch_hub_folds_refs_into_one_folder_and_reprohub_does_not(torch_hub, ours, server, tmp_path):
    repo = serve_repo(server, tmp_path, "o/r", {"hubconf.py": "def which():\n    return 'c/d'\n"})
    repo.branch("c/d")
    repo.commit({"hubconf.py": "def which():\n    return 'c_d'\n"}, "two")
    repo.branch("c_d")
    assert torch_hub.load("o/r:c/d", "which", **ARGS) == "c/d"
    assert torch_hub.load("o/r:c_d", "which", **ARGS) == "c/d"  # torch.hub runs the wrong code
    assert ours.load("o/r:c/d", "which", **ARGS) == "c/d"
    assert ours.load("o/r:c_d", "which", **ARGS) == "c_d"


# The exception table (README "Errors"): each scenario through torch.hub and through reprohub.
# reprohub's error must be an instance of the exact class torch.hub raised, and a ReprohubError.
def _scenarios(server, tmp_path):
    missing = server.file_url("missing.pt")
    weights = server.add_file("w-00000000.pt", b"some bytes")
    closed = "http://127.0.0.1:9/w.pt"  # nothing listens there
    no_hubconf = tmp_path / "empty-repo"
    no_hubconf.mkdir()
    broken = tmp_path / "broken-repo"
    broken.mkdir()
    (broken / "hubconf.py").write_text("import no_such_module_anywhere\n")
    return {
        "HTTP 404 on a weight URL": lambda hub: hub.download_url_to_file(missing, str(tmp_path / "a"), progress=False),
        "connection refused": lambda hub: hub.download_url_to_file(closed, str(tmp_path / "b"), progress=False),
        "hash_prefix mismatch": lambda hub: hub.load_state_dict_from_url(weights, str(tmp_path / "c"),
                                                                          check_hash=True, progress=False),
        "malformed repo spec": lambda hub: hub.load("no-slash", "m", trust_repo=True),
        "unknown source": lambda hub: hub.load("a/b", "m", source="svn", trust_repo=True),
        "folder without hubconf.py": lambda hub: hub.load(str(no_hubconf), "m", source="local"),
        "hubconf import fails": lambda hub: hub.load(str(broken), "m", source="local"),
    }


@pytest.mark.parametrize("scenario", ["HTTP 404 on a weight URL", "connection refused", "hash_prefix mismatch",
                                      "malformed repo spec", "unknown source", "folder without hubconf.py",
                                      "hubconf import fails"])
def test_errors_are_the_classes_torch_hub_raises(scenario, server, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROHUB_RETRIES", "0")  # the refused connection fails at once
    call = _scenarios(server, tmp_path)[scenario]
    with pytest.raises(Exception) as theirs:
        call(torch.hub)
    with pytest.raises(Exception) as ours:
        call(reprohub)
    assert isinstance(ours.value, type(theirs.value)), (type(theirs.value), type(ours.value))
    if scenario != "hubconf import fails":  # repo code's own errors pass through untouched
        assert isinstance(ours.value, reprohub.ReprohubError)


def test_http_status_errors_carry_what_urllib_users_read_and_survive_pickling(server, tmp_path):
    import pickle
    from urllib.error import HTTPError

    url = server.file_url("nope.pt")
    with pytest.raises(HTTPError) as info:
        reprohub.download_url_to_file(url, str(tmp_path / "x"), progress=False)
    err = info.value
    assert (err.code, err.url, err.reason) == (404, url, "Not Found") and err.headers["Content-Type"]
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is type(err) and (again.code, again.url, str(again)) == (err.code, err.url, str(err))


WSL_LIKE = {"hubconf.py": "dependencies = ['torch']\nfrom torch.hub import load_state_dict_from_url\n\n"
            "def resnext(pretrained=False):\n    '''A model.'''\n    return 1\n"}


def test_a_re_exported_torch_hub_function_reads_as_torch_hub_s_in_help_and_list(server, tmp_path, torch_hub, ours):
    """facebookresearch/WSL-Images imports load_state_dict_from_url into its hubconf: it is an entrypoint."""
    import inspect

    serve_repo(server, tmp_path, "facebookresearch/wsl", WSL_LIKE)
    spec = "facebookresearch/wsl:main"
    original = torch.hub.load_state_dict_from_url
    assert ours.list(spec, **ARGS) == torch_hub.list(spec, **ARGS)
    doc = ours.help(spec, "load_state_dict_from_url", trust_repo=True)
    assert doc == torch_hub.help(spec, "load_state_dict_from_url", trust_repo=True) == original.__doc__
    from reprohub.runtime import intercept

    assert intercept.load_state_dict_from_url.__name__ == "load_state_dict_from_url"
    assert inspect.signature(intercept.load_state_dict_from_url) == inspect.signature(original)


def test_the_progress_bar_stays_when_the_download_ends(server, tmp_path, capsys):
    body = b"x" * (300 << 10)
    url = server.add_file("w.bin", body)
    reprohub.download_url_to_file(url, str(tmp_path / "w.bin"), progress=True)
    err = capsys.readouterr().err
    assert "w.bin" in err and "300k" in err.lower().replace(" ", "") and not err.endswith("\r")
