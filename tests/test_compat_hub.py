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
