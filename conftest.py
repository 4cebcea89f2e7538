"""Root conftest: keep every test away from the user's real caches and network settings, and give the
docstring examples a real host to run against."""

import hashlib
import os

import pytest
import requests  # noqa: F401 -- see below
from _pytest.doctest import DoctestItem
from hypothesis import settings

pytest_plugins = ["pytester"]

# reprohub imports requests at its first request, not with reprohub.  pytester's in-process runs drop every
# module first imported during the run; a requests first imported inside one would be dropped while reprohub
# (and its patches of requests' classes) kept the old one, and the next run's `import requests` would mix two
# copies ("You can only merge into CookieJar").  Imported here, it is there before any run, as in a real process.

# Shared 2-core CI machines stall now and then: judge properties by their outcomes, not by time.
# Locally the properties explore (new examples each run, failures kept in .hypothesis/ and replayed);
# in CI (CI set) they are derandomized and keep no database, so one checkout gives one result.
# HYPOTHESIS_PROFILE=reprohub-ci (or reprohub) picks one explicitly.
settings.register_profile("reprohub", deadline=None)
settings.register_profile("reprohub-ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("reprohub-ci" if os.environ.get("CI") else "reprohub"))


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path_factory, monkeypatch):
    """Point TORCH_HOME at a fresh folder and clear reprohub's environment switches."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("REPROHUB_SWH_URL", "off")  # no test asks the real archive; tests/test_archive_swh.py starts one
    for name in ("REPROHUB_OFFLINE", "REPROHUB_GITHUB_API_URL", "GITHUB_TOKEN", "REPROHUB_TRUST", "XDG_CACHE_HOME",
                 "REPROHUB_MIRROR", "REPROHUB_ARCHIVE_URL"):
        monkeypatch.delenv(name, raising=False)
    import reprohub
    from reprohub.fetch.hosts import forget_dead_hosts

    reprohub.set_dir(None)
    forget_dead_hosts()  # a port a stopped server had may be a new server's in the next test
    yield
    reprohub.set_dir(None)
    assert "REPROHUB_TEST_LEAK" not in os.environ


@pytest.fixture(scope="session")
def _docs_host(tmp_path_factory):
    """The demo repo as ``acme/tiny`` (tag v1) and its weights, on 127.0.0.1, for the docstring examples."""
    from reprohub.testing.demo.run import HERE, demo_weights
    from reprohub.testing.gitrepo import GitRepo
    from reprohub.testing.server import HubServer

    repo = GitRepo.init(tmp_path_factory.mktemp("docs") / "tiny")
    repo.copy_tree(HERE / "repo", "tiny demo model v1")
    repo.tag("v1")
    weights = demo_weights()
    with HubServer() as server:
        server.add_repo("acme/tiny", repo.path)
        server.add_file("tiny_mlp-v1.pt", weights)
        server.add_file(f"tiny_mlp-{hashlib.sha256(weights).hexdigest()[:8]}.pt", weights)
        server.repo_path = repo.path
        yield server


@pytest.fixture(autouse=True)
def _docstring_examples(request, monkeypatch, _isolated_environment):
    """Docstring examples see ``server`` (the demo host), ``tmp`` (a fresh folder), ``Hub``, ``weights_url``
    and its ``weights_sha256``."""
    if not isinstance(request.node, DoctestItem):
        return
    server = request.getfixturevalue("_docs_host")
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    monkeypatch.setenv("REPROHUB_DEMO_FILES", f"{server.url}/files")
    monkeypatch.setenv("REPROHUB_TRUST", "acme/*")
    hashed = next(name for name in server.state.files if name != "tiny_mlp-v1.pt")
    request.getfixturevalue("doctest_namespace").update(
        reprohub=__import__("reprohub"), server=server, tmp=str(request.getfixturevalue("tmp_path")),
        weights_url=server.file_url("tiny_mlp-v1.pt"), weights_sha256=_sha256_of(server.state.files["tiny_mlp-v1.pt"]),
        hashed_url=server.file_url(hashed), Hub=__import__("reprohub").Hub)


def _sha256_of(content) -> str:
    import hashlib

    return hashlib.sha256(content if isinstance(content, bytes) else content.read_bytes()).hexdigest()
