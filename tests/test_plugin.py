"""End to end: generated projects run `pytest --hub-lock` for real, in a subprocess, in every mode."""

import glob
import os
import re
import shutil
import tempfile
from pathlib import Path
import subprocess
import sys
import textwrap

import pytest

from reprohub.lock.lockfile import Lockfile

from .conftest import tiny_repo_files, run_locked

TEST_TINY = """
import torch

def test_tiny(hub, golden):
    model = hub.load("acme/tiny:main", "tiny_mlp", pretrained=True).eval()
    with torch.no_grad():
        golden.check(model(golden.input(2, 3)))
"""

TEST_VERSION = """
def test_version(hub):
    assert hub.load("acme/tiny:v1", "version") == "v1"
"""


@pytest.fixture
def project(pytester, server, tiny_repo, weights_url, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_tiny=TEST_TINY, test_version=TEST_VERSION)
    return pytester


run = run_locked


def lock_of(project) -> Lockfile:
    return Lockfile.read(project.path / "hub.lock")


def test_record_then_check_then_offline(project, server, tiny_repo, weights_url):
    missing = run(project)
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    assert "--hub-update" in missing.stderr.str()

    recorded = run(project, "--hub-update")
    recorded.assert_outcomes(passed=2)
    lock = lock_of(project)
    assert lock.repos["acme/tiny:main"].commit == tiny_repo.v2 and lock.repos["acme/tiny:v1"].commit == tiny_repo.v1
    assert set(lock.artifacts) == {weights_url} and set(lock.goldens) == {"acme/tiny/tiny_mlp/test_tiny.test_tiny"}
    assert (project.path / "goldens/acme/tiny/tiny_mlp/test_tiny.test_tiny.safetensors").exists()
    recorded.stdout.fnmatch_lines(["reprohub: lock *hub.lock (0 repos, 0 artifacts, 0 goldens); mode update; "
                                   "online; torch *; CUDA *", "repos: 0 checked, 2 recorded, 0 changed, 0 unused"])
    first_bytes = (project.path / "hub.lock").read_bytes()

    checked = run(project)
    checked.assert_outcomes(passed=2)
    checked.stdout.fnmatch_lines(["repos: 2 checked, 0 recorded, 0 changed, 0 unused",
                                  "goldens: 1 checked, 0 recorded, 0 changed, 0 unused",
                                  "lock *: not modified (check mode)"])

    before = len(server.requests)
    offline = run(project, "--hub-offline")
    offline.assert_outcomes(passed=2)
    assert len(server.requests) == before, "a warm, locked, offline run must make no request"
    assert (project.path / "hub.lock").read_bytes() == first_bytes


@pytest.mark.slow
def test_xdist_writes_the_same_bytes(project, pytester):
    run(project, "--hub-update", "-n", "2").assert_outcomes(passed=2)
    with_xdist = (project.path / "hub.lock").read_bytes()
    golden = (project.path / "goldens/acme/tiny/tiny_mlp/test_tiny.test_tiny.safetensors").read_bytes()
    (project.path / "hub.lock").unlink()
    shutil.rmtree(project.path / "goldens")  # re-recorded too: its bytes are pinned in the lock
    run(project, "--hub-update").assert_outcomes(passed=2)
    assert (project.path / "goldens/acme/tiny/tiny_mlp/test_tiny.test_tiny.safetensors").read_bytes() == golden
    assert (project.path / "hub.lock").read_bytes() == with_xdist
    run(project, "-n", "2").assert_outcomes(passed=2)


def test_unlocked_use_fails_in_check_mode_and_names_the_entry(project):
    run(project, "--hub-update", "test_version.py").assert_outcomes(passed=1)
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*repo 'acme/tiny:main' pinned in *hub.lock*no such entry*--hub-update*"])


def edit_lock(project, old, new):
    path = project.path / "hub.lock"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_tampered_commit_fails_naming_it(project, tiny_repo):
    run(project, "--hub-update").assert_outcomes(passed=2)
    edit_lock(project, tiny_repo.v1, tiny_repo.v2)
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*repo acme/tiny:v1 at * with tree sha256*"])


def test_tampered_weight_digest_fails_naming_it(project, weights_url):
    run(project, "--hub-update").assert_outcomes(passed=2)
    digest = lock_of(project).artifacts[weights_url].sha256
    edit_lock(project, digest, "0" * 64)
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*expected sha256 {'0' * 64} for {weights_url}*found sha256 {digest}*"])


def test_removed_entry_and_broken_file(project):
    run(project, "--hub-update").assert_outcomes(passed=2)
    path = project.path / "hub.lock"
    text = path.read_text()
    start = text.index('[repos."acme/tiny:v1"]')
    path.write_text(text[:start] + text[text.index("\n\n", start) + 2:])
    removed = run(project)
    removed.assert_outcomes(passed=1, failed=1)
    removed.stdout.fnmatch_lines(["*repo 'acme/tiny:v1' pinned in*no such entry*"])
    path.write_text(text.replace('sha256 = "', 'sha256 = "zz', 1))
    broken = run(project)
    assert broken.ret == pytest.ExitCode.USAGE_ERROR
    assert "line" in broken.stderr.str() and "lower-case hex" in broken.stderr.str()


def test_tampered_golden_file_fails_naming_it(project):
    run(project, "--hub-update").assert_outcomes(passed=2)
    golden = project.path / "goldens/acme/tiny/tiny_mlp/test_tiny.test_tiny.safetensors"
    golden.write_bytes(golden.read_bytes()[:-4] + b"\0\0\0\0")
    result = run(project)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*golden acme/tiny/tiny_mlp/test_tiny.test_tiny with sha256*"])


def test_refresh_reports_moved_branch_and_changed_goldens(project, tiny_repo):
    run(project, "--hub-update").assert_outcomes(passed=2)
    locked = (project.path / "hub.lock").read_bytes()
    v3 = tiny_repo.commit(tiny_repo_files("v3", scale=3.0), "v3 changes outputs")
    refreshed = run(project, "--hub-refresh", "--hub-update")
    refreshed.assert_outcomes(passed=1, failed=1)
    refreshed.stdout.fnmatch_lines([
        f"refresh acme/tiny:main: {tiny_repo.v2[:12]} -> {v3[:12]}; tests: test_tiny.py::test_tiny failed",
        "  files changed: M tinynet/__init__.py, M tinynet/model.py",  # both trees are in the cache
        "refresh acme/tiny:v1: unchanged; tests: test_version.py::test_version passed",
        "refresh goldens changed: acme/tiny/tiny_mlp/test_tiny.test_tiny",
        "lock *: NOT written, 1 test failed after refresh*",
    ])
    refreshed.stdout.fnmatch_lines(["*out: values differ", "*Mismatched elements: * / 4 (*%)",
                                    "*Greatest absolute difference: * at index (*) (up to 1e-05 allowed)",
                                    "*Fix: if the change is intended: pytest --hub-lock *hub.lock --hub-accept*"])
    assert (project.path / "hub.lock").read_bytes() == locked
    report_only = run(project, "--hub-refresh")  # the counters and words agree with what happened
    report_only.stdout.fnmatch_lines(["goldens: 0 checked, 0 recorded, 1 changed, 0 unused",
                                      "refresh goldens changed: acme/tiny/tiny_mlp/test_tiny.test_tiny",
                                      "lock *: not modified (refresh mode only reports; --hub-accept writes*"])
    assert "(check mode)" not in report_only.stdout.str()

    accepted = run(project, "--hub-accept")  # accepting the update: one command
    accepted.assert_outcomes(passed=2)
    accepted.stdout.fnmatch_lines([
        "*mode accept*",
        f"refresh acme/tiny:main: {tiny_repo.v2[:12]} -> {v3[:12]}; tests: test_tiny.py::test_tiny passed",
        "accepted golden acme/tiny/tiny_mlp/test_tiny.test_tiny: out: values differ; Mismatched elements: 4 / 4*",
        "lock *: written",
    ])
    lock = lock_of(project)
    assert lock.repos["acme/tiny:main"].commit == v3 and lock.repos["acme/tiny:v1"].commit == tiny_repo.v1
    run(project).assert_outcomes(passed=2)  # and the accepted state checks green
    v4 = tiny_repo.commit(tiny_repo_files("v3", scale=3.0), "same outputs, new commit")
    run(project, "--hub-refresh", "--hub-update").assert_outcomes(passed=2)  # a safe update: outputs unchanged
    assert lock_of(project).repos["acme/tiny:main"].commit == v4


def test_missing_golden_says_how_to_record_and_saves_the_output(project):
    run(project, "--hub-update").assert_outcomes(passed=2)
    (project.path / "goldens/acme/tiny/tiny_mlp/test_tiny.test_tiny.safetensors").unlink()
    in_system_temp = set(glob.glob(os.path.join(tempfile.gettempdir(), "reprohub-*")))
    missing = run(project, "test_tiny.py")
    missing.assert_outcomes(failed=1)
    missing.stdout.fnmatch_lines(["*a golden for 'acme/tiny/tiny_mlp/test_tiny.test_tiny'*no such file*--hub-update*obtained values "
                                  "were written to *.safetensors*"])
    assert not (project.path / "goldens/acme/tiny/tiny_mlp/test_tiny.test_tiny.safetensors").exists()
    written = re.search(r"written to (\S+\.safetensors)", missing.stdout.str()).group(1)
    # in the failing test's own tmp_path (pytester's subprocess runs put their basetemp beside the project)
    assert Path(written).is_file() and Path(written).is_relative_to(project.path.parent), written
    assert "/test_tiny0/" in written
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "reprohub-*"))) == in_system_temp


def test_unused_entries_warn_or_fail(project):
    run(project, "--hub-update").assert_outcomes(passed=2)
    deselected = run(project, "-k", "version")  # part of the suite: a path selection is judged as -k is
    deselected.stdout.fnmatch_lines(["*tests were deselected: unused entries are reported for full runs only*"])
    assert run(project, "test_version.py", "--hub-strict-unused").ret == pytest.ExitCode.OK
    (project.path / "test_tiny.py").unlink()  # the whole suite, which no longer uses acme/tiny:main
    only_one = run(project)
    only_one.assert_outcomes(passed=1)
    only_one.stdout.fnmatch_lines(["*warning: unused repo acme/tiny:main*"])
    strict = run(project, "--hub-strict-unused")
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    strict.stdout.fnmatch_lines(["*ERROR: unused repo acme/tiny:main*"])


def test_tests_without_hub_are_unaffected(pytester):
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "=== reprohub ===" not in result.stdout.str() and "reprohub: lock" not in result.stdout.str()


def test_plugin_and_light_commands_never_import_torch(tmp_path):
    script = textwrap.dedent("""
        import sys
        import reprohub.pytest_plugin
        from reprohub.cli import main
        try:
            main(["--help"])
        except SystemExit:
            pass
        main(["cache", "ls"])
        main(["verify", "--lock", "missing.lock"])
        print("torch imported:", "torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert "torch imported: False" in out.stdout, out.stderr


def test_hub_device_runs_cpu_and_skips_cuda_with_a_reason(project, pytester):
    pytester.makepyfile(test_device="""
        def test_on_device(hub, golden, hub_device):
            model = hub.load("acme/tiny:v1", "tiny_mlp").to(hub_device)
            golden.check(model(golden.input(2, 3, device=hub_device)), key="tiny/on-device")
    """)
    import torch

    run(project, "--hub-update", "test_device.py", "--hub-device", "cpu").assert_outcomes(passed=1)
    result = run(project, "test_device.py", "--hub-device", "cpu,cuda", "-rs")
    if torch.cuda.is_available():
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(passed=1, skipped=1)
        result.stdout.fnmatch_lines(["*cuda requested (--hub-device) but torch.cuda.is_available() is False*"])


def test_direct_torch_hub_and_reprohub_calls_go_through_the_lock(project, pytester, tiny_repo):
    pytester.makepyfile(test_direct="""
        import torch
        import reprohub

        def test_direct():
            assert torch.hub.load("acme/tiny:v1", "version", trust_repo=True, skip_validation=True) == "v1"
            assert reprohub.load("acme/tiny:stable", "version") == "v1"
    """)
    run(project, "--hub-update", "test_direct.py").assert_outcomes(passed=1)
    assert {spec: pin.commit for spec, pin in lock_of(project).repos.items()} == {
        "acme/tiny:v1": tiny_repo.v1, "acme/tiny:stable": tiny_repo.v1}
    run(project, "test_direct.py", "--hub-offline").assert_outcomes(passed=1)


def test_golden_key_never_comes_from_an_earlier_test(project, pytester):
    pytester.makepyfile(test_keys="""
        import torch

        def test_a_loads(hub, golden):
            hub.load("acme/tiny:v1", "version")

        def test_b_checks_without_loading(golden):
            golden.check(torch.ones(2))
    """)
    result = run(project, "--hub-update", "test_keys.py")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*a hub.load(...) earlier in the test, or golden.check(..., key='name')*"])


def test_locked_cold_run_makes_no_api_request(project, server, tmp_path, monkeypatch):
    run(project, "--hub-update").assert_outcomes(passed=2)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-runner"))
    before = len(server.requests)
    run(project).assert_outcomes(passed=2)
    paths = [p for _, p, _ in server.requests[before:]]
    assert paths and not [p for p in paths if p.startswith("/api/")], paths  # archives by the web route only


@pytest.mark.slow
def test_bundle_then_origin_gone_then_cold_run_passes_from_the_mirror(project, server, tmp_path, monkeypatch):
    from reprohub.cli import main

    run(project, "--hub-update").assert_outcomes(passed=2)
    assert main(["bundle", "--lock", str(project.path / "hub.lock"), str(tmp_path / "bundle")]) == 0
    server.stop()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-runner"))
    monkeypatch.setenv("REPROHUB_MIRROR", (tmp_path / "bundle").as_uri())
    run(project).assert_outcomes(passed=2)
    monkeypatch.delenv("REPROHUB_MIRROR")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-runner-2"))  # the ini key, relative to the rootdir
    shutil.copytree(tmp_path / "bundle", project.path / "hub-bundle")
    project.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\nhub_mirror = hub-bundle\n")
    run(project, "-p", "xdist", "-n", "2").assert_outcomes(passed=2)


def test_the_report_header_names_the_mirror_in_use(pytester, tmp_path):
    Lockfile().write(pytester.path / "hub.lock")
    pytester.makepyfile(test_nothing="def test_x():\n    pass\n")
    from reprohub.cli import main

    assert main(["bundle", "--lock", str(pytester.path / "hub.lock"), str(pytester.path / "hub-bundle")]) == 0
    result = pytester.runpytest("-p", "no:cacheprovider", "--hub-lock", "hub.lock", "--hub-mirror",
                                str(pytester.path / "hub-bundle"), "--co")
    result.stdout.fnmatch_lines([f"reprohub: lock *; mode check; online; mirrors file://{pytester.path}/hub-bundle; "
                                 "torch *"])
