"""The CI workflow end to end (pytester runs): golden keys, trust, portable locks, clean reports, the CLI."""


import pytest

from reprohub.cli import EXIT_MISMATCH, EXIT_USAGE, main
from reprohub.lock.lockfile import Lockfile
from reprohub.testing.server import HubServer

from .conftest import serve_repo, tiny_repo_files, run_locked

MODEL_TESTS = """
import pytest, torch

def model(hub):
    return hub.load("acme/tiny:main", "tiny_mlp", pretrained=True).eval()

@pytest.mark.parametrize("batch", [1, 3])
def test_batches(hub, golden, batch):
    with torch.no_grad():
        golden.check(model(hub)(golden.input(batch, 3)))

def test_other_input(hub, golden):
    with torch.no_grad():
        golden.check(model(hub)(golden.input(2, 3, seed=5)))
"""


@pytest.fixture
def project(pytester, server, tiny_repo, weights_url, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    return pytester


run = run_locked


@pytest.mark.slow
def test_a_parametrized_model_test_records_and_rechecks_green_with_and_without_xdist(project):
    project.makepyfile(test_model=MODEL_TESTS)
    run(project, "--hub-update", "-n", "2").assert_outcomes(passed=3)
    lock = Lockfile.read(project.path / "hub.lock")
    assert sorted(lock.goldens) == ["acme/tiny/tiny_mlp/test_model.test_batches-1",
                                    "acme/tiny/tiny_mlp/test_model.test_batches-3",
                                    "acme/tiny/tiny_mlp/test_model.test_other_input"]
    run(project).assert_outcomes(passed=3)
    recorded_with_xdist = (project.path / "hub.lock").read_bytes()
    (project.path / "hub.lock").unlink()
    run(project, "--hub-update").assert_outcomes(passed=3)
    assert (project.path / "hub.lock").read_bytes() == recorded_with_xdist
    run(project, "-n", "2").assert_outcomes(passed=3)


def test_two_tests_writing_one_key_differently_fail_naming_both(project):
    project.makepyfile(test_clash="""
        import torch
        def test_a(hub, golden):
            golden.check(torch.ones(2), key="shared")
        def test_b(hub, golden):
            golden.check(torch.zeros(2), key="shared")
    """)
    result = run(project, "--hub-update")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_clash.py::test_a and test_clash.py::test_b wrote different outputs*"])
    assert not (project.path / "hub.lock").exists()  # never a lock from a failed session


def test_recording_third_party_repos_needs_one_switch_and_the_lock_is_trust_afterwards(project, server, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.delenv("REPROHUB_TRUST")
    serve_repo(server, tmp_path, "stranger/tiny", tiny_repo_files("v1"))
    project.makepyfile(test_stranger="def test_v(hub):\n    assert hub.load('stranger/tiny', 'version') == 'v1'\n")
    refused = run(project, "--hub-update")
    refused.assert_outcomes(failed=1)
    refused.stdout.fnmatch_lines(["*UntrustedRepoError*--hub-trust stranger/tiny*"])
    assert not (project.path / "hub.lock").exists()
    run(project, "--hub-update", "--hub-trust", "stranger/*").assert_outcomes(passed=1)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-ci-machine"))
    run(project, "--hub-refresh").assert_outcomes(passed=1)  # pinned in the reviewed lock: trusted
    run(project).assert_outcomes(passed=1)


def test_a_new_host_port_changes_nothing_and_downloads_nothing(project, server, tiny_repo, monkeypatch):
    project.makepyfile(test_version="def test_v(hub):\n    assert hub.load('acme/tiny:v1', 'version') == 'v1'\n")
    run(project, "--hub-update").assert_outcomes(passed=1)
    recorded = (project.path / "hub.lock").read_bytes()
    with HubServer() as moved:  # the same repo, back on another port
        moved.add_repo("acme/tiny", tiny_repo.path)
        monkeypatch.setenv("REPROHUB_GITHUB_API_URL", moved.api_url)
        checked = run(project)
        checked.assert_outcomes(passed=1)
        checked.stdout.fnmatch_lines(["repos: 1 checked, 0 recorded, 0 changed, 0 unused"])
        run(project, "--hub-update").assert_outcomes(passed=1)
        assert (project.path / "hub.lock").read_bytes() == recorded
        assert moved.hits("/acme/tiny/archive/") == 0 and moved.hits("/api/") == 0  # the cached commit is reused


def test_a_golden_failure_is_reported_once_and_reprohub_errors_read_short(project, tiny_repo):
    project.makepyfile(test_model=MODEL_TESTS)
    run(project, "--hub-update").assert_outcomes(passed=3)
    lock = project.path / "hub.lock"
    lock.write_text(lock.read_text().replace(tiny_repo.v2, tiny_repo.v1))  # pin main to another commit
    result = run(project, "test_model.py::test_other_input")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "During handling of the above exception" not in out
    assert "reprohub/hub.py" not in out and "reprohub/lock/session.py" not in out
    result.stdout.fnmatch_lines(["test_model.py:*: in test_other_input", "*reprohub.errors.LockMismatchError: *"])


def test_failed_uses_are_not_unused_and_deselected_runs_report_none(project, tiny_repo):
    import hashlib

    from reprohub.golden.engine import load_golden, save_golden

    project.makepyfile(test_model=MODEL_TESTS)
    run(project, "--hub-update").assert_outcomes(passed=3)
    key = "acme/tiny/tiny_mlp/test_model.test_other_input"
    golden = project.path / f"goldens/{key}.safetensors"
    recorded = load_golden(golden)
    save_golden(golden, recorded.leaves["out"] + 1, recorded.metadata)  # a golden the model no longer matches,
    lock = project.path / "hub.lock"
    old = Lockfile.read(lock).goldens[key].sha256
    lock.write_text(lock.read_text().replace(old, hashlib.sha256(golden.read_bytes()).hexdigest()))  # pinned so
    mismatched = run(project)
    mismatched.assert_outcomes(passed=2, failed=1)
    assert "warning: unused" not in mismatched.stdout.str()  # the failed check still used its golden
    only_some = run(project, "-k", "test_batches")
    assert "warning: unused" not in only_some.stdout.str()
    only_some.stdout.fnmatch_lines(["*tests were deselected: unused entries are reported for full runs only*"])


def test_the_api_url_can_live_in_the_ini_file(project, server, monkeypatch):
    monkeypatch.delenv("REPROHUB_GITHUB_API_URL")
    project.makefile(".ini", pytest=f"[pytest]\nhub_golden_dir = goldens\nhub_api_url = {server.api_url}\n")
    project.makepyfile(test_version="def test_v(hub):\n    assert hub.load('acme/tiny:v1', 'version') == 'v1'\n")
    run(project, "--hub-update").assert_outcomes(passed=1)
    assert not list(project.path.glob(".*.lock"))  # the writer's lock lives in the hub dir, not beside hub.lock


def test_cli_edges(capsys, server, tiny_repo, monkeypatch):
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0 and capsys.readouterr().out.startswith("reprohub 0.")
    assert main(["cache", "rm"]) == EXIT_USAGE and "name what to remove" in capsys.readouterr().err
    assert main(["cache", "rm", "nobody/nothing"]) == EXIT_MISMATCH
    assert "no cached entry matches 'nobody/nothing'" in capsys.readouterr().err
    busy = server.url.rsplit(":", 1)[1]
    assert main(["serve", "--port", busy]) == 3 and "--port 0" in capsys.readouterr().err
    assert main(["list", "no-slash"]) == EXIT_USAGE and "owner/repo" in capsys.readouterr().err
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    monkeypatch.setenv("REPROHUB_TRUST", "all")
    assert main(["bench", "acme/tiny:v1", "version", "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert "cold load of acme/tiny:v1 version" in out and "warm load" in out and "0 HTTP requests" in out


def test_a_quick_benchmark_run_never_overwrites_the_committed_results():
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).parent.parent / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        spec = importlib.util.spec_from_file_location("bench_run", bench / "run.py")
        run_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(run_module)
    finally:
        sys.path.remove(str(bench))
    assert run_module.results_folder(None, quick=True) == bench / "results" / "quick"
    assert run_module.results_folder(None, quick=False) == bench / "results" / ""
    assert run_module.results_folder("/elsewhere", quick=True) == Path("/elsewhere")


def test_fetch_reaches_the_host_the_lock_recorded(server, tiny_repo, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    monkeypatch.chdir(tmp_path)
    assert main(["lock", "acme/tiny:v1"]) == 0
    monkeypatch.delenv("REPROHUB_GITHUB_API_URL")  # a CI machine that only has the lock
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh"))
    assert main(["fetch"]) == 0 and "repo acme/tiny:v1" in capsys.readouterr().out
    assert server.hits("/acme/tiny/archive/") == 2  # once for `lock`, once for the fresh cache


PAIR_TESTS = """
import os, time, torch

def wait_for_the_other(name, other):
    open(name, "w").close()  # both runs are past reading the lock once both flags exist
    deadline = time.time() + 60
    while not os.path.exists(other) and time.time() < deadline:
        time.sleep(0.01)

def test_a(hub, golden):
    wait_for_the_other("a.flag", "b.flag")
    golden.check(torch.ones(2), key="a")

def test_b(hub, golden):
    wait_for_the_other("b.flag", "a.flag")
    golden.check(torch.zeros(2), key="b")
"""


@pytest.mark.slow
def test_two_update_runs_at_once_on_one_lock_keep_both_entries(project):
    """Two real pytest processes, each reading the lock before either writes it: nothing is dropped."""
    import subprocess
    import sys

    project.makepyfile(test_pair=PAIR_TESTS)
    Lockfile().write(project.path / "hub.lock")
    runs = [subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--hub-lock", "hub.lock",
                              "--hub-update", "-k", name, "-q"], cwd=project.path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for name in ("test_a", "test_b")]
    outputs = [r.communicate(timeout=120)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outputs
    assert sorted(Lockfile.read(project.path / "hub.lock").goldens) == ["a", "b"]
    run(project).assert_outcomes(passed=2)


def test_a_concurrent_run_that_changed_the_same_entry_differently_fails_and_writes_nothing(tmp_path):
    from reprohub.errors import LockfileError
    from reprohub.lock.lockfile import GoldenPin

    base = Lockfile()
    Lockfile(goldens={"k": GoldenPin("k", "k.st", "1" * 64)}).write(tmp_path / "hub.lock")  # the other run's
    before = (tmp_path / "hub.lock").read_bytes()
    with pytest.raises(LockfileError, match="another run changed it"):
        Lockfile(goldens={"k": GoldenPin("k", "k.st", "2" * 64)}).write(tmp_path / "hub.lock", base=base)
    assert (tmp_path / "hub.lock").read_bytes() == before
