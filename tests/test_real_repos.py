"""What popular hub repos do that broke the lock, bundle and golden path: committed __pycache__, nested
loads, weight downloads a test expects to fail, damaged bundles, pruning. Real git repos on a test host."""

import logging
import zipfile

import pytest
import torch

from reprohub import Hub
from reprohub.cli import EXIT_MISMATCH, EXIT_OK, main
from reprohub.errors import MirrorError
from reprohub.golden.store import GoldenStore
from reprohub.lock.lockfile import Lockfile
from reprohub.lock.session import LockSession
from reprohub.pytest_plugin import GoldenChecker

from .conftest import FAST_POLICY, serve_repo, run_locked


def record(tmp_path, server, *specs_and_models):
    """Load each (spec, entrypoint) in update mode and write the lock; returns its path."""
    path = tmp_path / "hub.lock"
    session = LockSession(Lockfile.read(path), str(path), update=True)
    hub = Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url, pins=session, policy=FAST_POLICY)
    hub.recorder.listeners.append(session.observe)
    for spec, model in specs_and_models:
        hub.load(spec, model)
    session.result().write(path)
    return path


YOLOP_LIKE = {
    "hubconf.py": "dependencies = []\nfrom lib.net import make\n\ndef yolop():\n    return make()\n",
    "lib/__init__.py": "",
    "lib/net.py": "def make():\n    return 'yolop'\n",
    "lib/__pycache__/net.cpython-311.pyc": b"\x00stale bytecode a contributor committed",
    "__pycache__/hubconf.cpython-311.pyc": b"\x00more of it",
}


def test_a_repo_that_commits_pycache_bundles_verifies_and_reloads_quietly(server, tmp_path, monkeypatch, caplog):
    served = serve_repo(server, tmp_path, "hustvl/yolop", YOLOP_LIKE)
    assert "lib/__pycache__/net.cpython-311.pyc" in served.git("ls-files")  # committed, as YOLOP does
    lock = record(tmp_path, server, ("hustvl/yolop:main", "yolop"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # the CLI's cache: the one record() filled
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    assert main(["bundle", "--lock", str(lock), str(tmp_path / "bundle")]) == EXIT_OK
    assert (tmp_path / "bundle" / "reprohub-bundle.json").is_file()
    assert main(["verify", "--lock", str(lock)]) == EXIT_OK
    assert main(["verify", "--lock", str(lock), "--bundle", str(tmp_path / "bundle")]) == EXIT_OK
    caplog.set_level(logging.WARNING, logger="reprohub")
    hub = Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url, policy=FAST_POLICY)
    assert hub.load("hustvl/yolop:main", "yolop", force_reload=True) == "yolop"
    assert "was changed" not in caplog.text


def test_a_bundle_whose_cached_tree_was_edited_is_a_verification_failure_and_writes_nothing(server, tmp_path,
                                                                                              monkeypatch, capsys):
    serve_repo(server, tmp_path, "acme/one", {"hubconf.py": "def m():\n    return 1\n"})
    serve_repo(server, tmp_path, "acme/two", {"hubconf.py": "def m():\n    return 2\n"})
    lock = record(tmp_path, server, ("acme/one:main", "m"), ("acme/two:main", "m"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    two = next((tmp_path / "hub" / "reprohub" / "repos" / "github" / "acme" / "two").glob("*/hubconf.py"))
    two.write_text("def m():\n    return 'edited'\n")
    assert main(["bundle", "--lock", str(lock), str(tmp_path / "bundle")]) == EXIT_MISMATCH
    assert "cache rm" in capsys.readouterr().err
    assert not (tmp_path / "bundle").exists() or not any((tmp_path / "bundle").rglob("*.zip"))  # not half a bundle


OUTER = {"hubconf.py": "dependencies = []\nimport torch\n\ndef dino():\n"
         "    return torch.hub.load('facebookresearch/xcit:main', 'xcit')\n"}
INNER = {"hubconf.py": "def xcit():\n    import torch\n    return torch.nn.Identity()\n"}


def test_a_nested_load_s_golden_names_the_outer_commit_and_lists_the_nested_one(server, tmp_path):
    outer = serve_repo(server, tmp_path, "facebookresearch/dino", OUTER)
    inner = serve_repo(server, tmp_path, "facebookresearch/xcit", INNER)
    hub = Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url, policy=FAST_POLICY)
    checker = GoldenChecker(GoldenStore(tmp_path / "g", tmp_path, update=True), hub, tmp_path, "t.py::test_dino")
    model = hub.load("facebookresearch/dino:main", "dino")
    checker.check(model(checker.input(2, 3)))
    from reprohub.golden.engine import load_golden

    golden = load_golden(checker.store.path_for("facebookresearch/dino/dino/t.test_dino"))
    assert golden.metadata["commit"] == outer.head() and golden.metadata["entrypoint"] == "facebookresearch/dino:main:dino"
    assert golden.metadata["nested"] == f"facebookresearch/xcit:main@{inner.head()}"


MIDAS_LIKE = """
dependencies = []
import torch

def midas():
    try:  # the nested WSL-Images weights are gone; MiDaS carries on without them
        torch.hub.load_state_dict_from_url("{url}", progress=False)
    except Exception:
        pass
    return "midas"
"""

MIDAS_TEST = """
def test_midas(hub):
    assert hub.load("isl-org/midas:main", "midas") == "midas"
"""


@pytest.fixture
def project(pytester, server, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    return pytester


run = run_locked


def test_a_weight_download_that_failed_while_recording_is_named_and_the_lock_passes_its_first_check(
        project, server, tmp_path):
    gone = f"{server.url}/files/ig_resnext101_32x8-c38310e5.pth"  # never added: 404
    serve_repo(server, tmp_path, "isl-org/midas", {"hubconf.py": MIDAS_LIKE.format(url=gone)})
    project.makepyfile(test_midas=MIDAS_TEST)
    recorded = run(project, "--hub-update")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines([f"  new unreachable URL {gone}: HTTP 404 (check runs expect the same failure)"])
    assert Lockfile.read(project.path / "hub.lock").unreachable[gone].error == "HTTP 404"
    run(project).assert_outcomes(passed=1)  # the lock passes its own first check
    run(project, "--hub-offline").assert_outcomes(passed=1)


PRUNE_TESTS = """
def test_v1(hub):
    assert hub.load("acme/tiny:v1", "version") == "v1"

def test_main(hub):
    hub.load("acme/tiny:main", "version")
"""


def test_prune_drops_unused_entries_only_from_a_full_green_run(project, tiny_repo):
    project.makepyfile(test_prune=PRUNE_TESTS)
    run(project, "--hub-update").assert_outcomes(passed=2)
    before = (project.path / "hub.lock").read_bytes()
    partial = run(project, "--hub-update", "--hub-prune", "-k", "test_v1")  # test_main deselected: not a full run
    assert partial.ret != 0 and (project.path / "hub.lock").read_bytes() == before
    partial.stdout.fnmatch_lines(["*NOT written*--hub-prune*1 deselected tests*"])
    project.makepyfile(test_prune=PRUNE_TESTS.split("def test_main")[0])  # the test is gone for good
    run(project, "--hub-update").assert_outcomes(passed=1)
    assert "acme/tiny:main" in Lockfile.read(project.path / "hub.lock").repos  # kept without --hub-prune
    run(project, "--hub-update", "--hub-prune").assert_outcomes(passed=1)
    assert sorted(Lockfile.read(project.path / "hub.lock").repos) == ["acme/tiny:v1"]


def test_a_golden_mismatch_from_a_changed_input_says_so(tmp_path):
    GoldenStore(tmp_path / "g", tmp_path, update=True).check(torch.ones(2), "k", {"input": "randn(2, 3) seed=1"})
    with pytest.raises(AssertionError, match=r"the input differs from the one recorded: randn\(2, 3\) seed=1 -> "
                                             r"randn\(2, 3\) seed=2"):
        GoldenStore(tmp_path / "g", tmp_path).check(torch.zeros(2), "k", {"input": "randn(2, 3) seed=2"})


def test_a_damaged_zip_in_a_bundle_is_a_mirror_error_naming_the_mirror(server, tmp_path, monkeypatch):
    serve_repo(server, tmp_path, "acme/one", {"hubconf.py": "def m():\n    return 1\n" * 40})
    lock = record(tmp_path, server, ("acme/one:main", "m"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    assert main(["bundle", "--lock", str(lock), str(tmp_path / "bundle")]) == EXIT_OK
    item = next((tmp_path / "bundle").rglob("*.zip"))
    data = bytearray(item.read_bytes())
    data[60] ^= 0xFF  # a flipped byte inside the stored hubconf.py: its CRC fails
    item.write_bytes(bytes(data))
    with zipfile.ZipFile(item) as zf:
        assert zf.testzip() == "hubconf.py"
    cold = Hub(hub_dir=tmp_path / "cold", pins=LockSession(Lockfile.read(lock), str(lock)),
               mirrors=[str(tmp_path / "bundle")], policy=FAST_POLICY)
    with pytest.raises(MirrorError, match="mirror file://.*bundle"):
        cold.load("acme/one:main", "m")


SILERO_LIKE = {
    "hubconf.py": "dependencies = []\nimport os\n\ndef tts(name='v3'):\n"
                  "    here = os.path.dirname(os.path.abspath(__file__))\n"
                  "    os.makedirs(os.path.join(here, 'models'), exist_ok=True)\n"
                  "    with open(os.path.join(here, 'models', name + '.pt'), 'wb') as out:  # as silero-models does\n"
                  "        out.write(b'downloaded weights')\n"
                  "    return name\n",
}


def test_a_repo_that_downloads_into_its_own_folder_verifies_bundles_and_reloads(server, tmp_path, monkeypatch,
                                                                               capsys, caplog):
    serve_repo(server, tmp_path, "snakers4/silero-models", SILERO_LIKE)
    lock = record(tmp_path, server, ("snakers4/silero-models:main", "tts"))
    hub = Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url, policy=FAST_POLICY)
    folder = hub.resolve("snakers4/silero-models:main", verbose=False).path
    assert (folder / "models" / "v3.pt").is_file()  # the repo wrote into its extracted folder
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    capsys.readouterr()
    assert main(["verify", "--lock", str(lock)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "0 problems" in out and "1 files its code wrote into its folder" in out and "models/v3.pt" in out
    assert main(["bundle", "--lock", str(lock), str(tmp_path / "bundle")]) == EXIT_OK
    (bundled,) = (tmp_path / "bundle").rglob("*.zip")
    with zipfile.ZipFile(bundled) as zf:
        assert zf.namelist() == ["hubconf.py"]  # the pinned tree, not what its code wrote
    assert main(["verify", "--lock", str(lock), "--bundle", str(tmp_path / "bundle")]) == EXIT_OK
    caplog.set_level(logging.WARNING, logger="reprohub")
    assert hub.load("snakers4/silero-models:main", "tts", force_reload=True) == "v3"
    assert "was changed" not in caplog.text  # not taken for a damaged tree and extracted again
    (folder / "hubconf.py").write_text("def tts():\n    return 'edited'\n")  # an edit of a pinned file still counts
    assert main(["verify", "--lock", str(lock)]) == EXIT_MISMATCH
