"""What the author and the reviewer of a pull request meet (issue 40): no false drift on the machine that
recorded, an accept that leaves no stale pin, usage errors at start, one-line summaries that carry the
error, a lock with merge conflicts, a mistyped option."""

import io

import pytest
import torch

from reprohub.cli import EXIT_USAGE, main
from reprohub.lock.lockfile import Lockfile

from .conftest import run_locked, serve_repo
from .test_plugin import TEST_TINY


@pytest.fixture
def tiny_project(pytester, server, tiny_repo, weights_url, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_tiny=TEST_TINY)
    return pytester


def test_the_machine_that_recorded_sees_no_drift_in_the_header(tiny_project, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    run_locked(tiny_project, "--hub-update").assert_outcomes(passed=1)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # a new process: the fixture has not set it yet
    result = run_locked(tiny_project)
    result.assert_outcomes(passed=1)
    assert "recorded in another environment" not in result.stdout.str()


@pytest.mark.parametrize("mode", ["--hub-refresh", "--hub-accept"])
def test_modes_that_ask_the_origin_are_refused_offline_at_start(tiny_project, mode):
    run_locked(tiny_project, "--hub-update").assert_outcomes(passed=1)
    result = run_locked(tiny_project, mode, "--hub-offline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{mode} asks each repo's host where its ref points now*--hub-offline*"])


def test_the_one_line_summary_of_a_reprohub_error_is_the_error(tiny_project):
    Lockfile().write(tiny_project.path / "hub.lock")  # nothing pinned: the load is refused
    result = run_locked(tiny_project, "-rf")
    result.assert_outcomes(failed=1)
    # (the terminal's width cuts the line; what is there is the error, not "test_tiny.py:4: in test_tiny")
    result.stdout.fnmatch_lines(["FAILED test_tiny.py::test_tiny - reprohub.errors.LockMismatchError: expected*"])


def test_a_lock_with_merge_conflicts_gets_the_merge_advice(tmp_path, capsys):
    lock = tmp_path / "hub.lock"
    lock.write_text('version = "2.0"\n<<<<<<< HEAD\n[artifacts."https://h/w.pt"]\nsha256 = "' + "1" * 64 +
                    '"\nsize = 1\n=======\n[artifacts."https://h/w.pt"]\nsha256 = "' + "2" * 64 +
                    '"\nsize = 1\n>>>>>>> upstream\n')
    assert main(["verify", "--lock", str(lock)]) != 0
    err = capsys.readouterr().err
    assert "conflict markers in" in err and "(line 2)" in err and "--ours" in err and "merged branch" in err
    assert "delete the file" not in err


def test_a_mistyped_option_is_told_by_its_command_with_the_likely_one(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["fetch", "--lok", "hub.lock"])
    assert caught.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("usage: reprohub fetch") and "did you mean --lock?" in err


HUBCONF_WEIGHTS = '''
dependencies = ["torch"]

import torch

WEIGHTS = "{url}"


def model():
    layer = torch.nn.Linear(2, 2)
    layer.load_state_dict(torch.hub.load_state_dict_from_url(WEIGHTS, progress=False))
    return layer
'''

TEST_MODEL = '''
import torch


def test_model(hub, golden):
    model = hub.load("acme/weights:main", "model").eval()
    with torch.no_grad():
        golden.check(model(torch.ones(1, 2)))
'''


def _weights(seed: int) -> bytes:
    torch.manual_seed(seed)
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(2, 2).state_dict(), buffer)
    return buffer.getvalue()


def test_an_accept_drops_the_weights_the_old_commit_used_and_says_so(pytester, server, tmp_path, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    v1, v2 = server.add_file("w-v1.pt", _weights(1)), server.add_file("w-v2.pt", _weights(2))
    repo = serve_repo(server, tmp_path, "acme/weights", {"hubconf.py": HUBCONF_WEIGHTS.format(url=v1)})
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_model=TEST_MODEL)
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    repo.commit({"hubconf.py": HUBCONF_WEIGHTS.format(url=v2)}, "new upstream weights")
    summary = tmp_path / "step-summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run_locked(pytester, "--hub-refresh").assert_outcomes(failed=1)  # what the reviewer sees first
    text = summary.read_text()
    assert "`pytest --hub-lock hub.lock --hub-accept`" in text and str(pytester.path) not in text
    assert text.index("| test | golden |") < text.index("<details>")  # the table, then the terminal's lines folded
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    accepted = run_locked(pytester, "--hub-accept")
    accepted.assert_outcomes(passed=1)
    accepted.stdout.fnmatch_lines([f"  accept: dropped artifact {v1} (what acme/weights:main's old commit downloaded;"
                                   " its new commit does not)"])
    assert "unused artifact" not in accepted.stdout.str()
    assert f", artifacts [{v1}] -> [{v2}]" in accepted.stdout.str()  # a list as its items, not a tuple's repr
    assert set(Lockfile.read(pytester.path / "hub.lock").artifacts) == {v2}
    checked = run_locked(pytester)
    checked.assert_outcomes(passed=1)
    assert "unused" not in checked.stdout.str().replace("0 unused", "")


def test_a_prune_says_what_it_removed(tiny_project):
    tiny_project.makepyfile(test_version="def test_version(hub):\n    assert hub.load('acme/tiny:v1', 'version')\n")
    run_locked(tiny_project, "--hub-update").assert_outcomes(passed=2)
    (tiny_project.path / "test_version.py").unlink()
    pruned = run_locked(tiny_project, "--hub-update", "--hub-prune")
    pruned.assert_outcomes(passed=1)
    pruned.stdout.fnmatch_lines(["  pruned unused repo acme/tiny:v1"])
    assert "drop such entries" not in pruned.stdout.str()


def test_a_path_selection_reports_no_unused_entries_as_k_does(tiny_project):
    tiny_project.makepyfile(test_version="def test_version(hub):\n    assert hub.load('acme/tiny:v1', 'version')\n")
    run_locked(tiny_project, "--hub-update").assert_outcomes(passed=2)
    part = run_locked(tiny_project, "test_tiny.py")
    part.assert_outcomes(passed=1)
    assert "unused repo" not in part.stdout.str()
    part.stdout.fnmatch_lines(["  (a selection of paths ran (test_tiny.py): unused entries are reported for full "
                               "runs only)"])


def test_golden_show_of_a_missing_file_says_so(tmp_path, capsys):
    assert main(["golden", "show", str(tmp_path / "nosuch.safetensors")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "no such golden file" in err and "repo's code" not in err


def test_serve_sends_weights_as_bytes_and_pages_as_pages(server):
    import urllib.request

    for name, kind in (("w.pt", "application/octet-stream"), ("w.bin", "application/octet-stream"),
                       ("config.json", "application/json"), ("notes.txt", "text/plain")):
        url = server.add_file(name, b"x")
        assert urllib.request.urlopen(url).headers["Content-Type"] == kind


def test_the_demo_without_a_workdir_removes_its_temporary_folder(monkeypatch):
    from reprohub.testing.demo import run

    seen = []
    monkeypatch.setattr(run, "_run_demo", lambda root, kept: seen.append((root, root.is_dir(), kept)) or 0)
    assert run.run_demo() == 0
    (root, existed, kept), = seen
    assert existed and not kept and not root.exists()


CONV_TEST = '''
import torch


def test_conv(hub, golden):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight[1] += {shift}  # the new upstream weights: channel 1 moved
        golden.check(conv(torch.rand(1, 3, 8, 8)), key="conv/out")
'''


def test_a_re_recorded_golden_s_plain_git_diff_shows_how_much_and_which_slice_moved(pytester):
    import difflib

    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_conv=CONV_TEST.format(shift=0.0))
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    companion = pytester.path / "goldens" / "conv" / "out.golden.txt"
    before = companion.read_text().splitlines()
    pytester.makepyfile(test_conv=CONV_TEST.format(shift=0.001))
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    after = companion.read_text().splitlines()
    added = [line[1:] for line in difflib.unified_diff(before, after, lineterm="", n=0)
             if line.startswith("+") and not line.startswith("+++")]
    moved = next(line for line in added if line.startswith("moved out:"))
    assert moved.startswith("moved out: 64 of 192 elements, max abs ") and " at [0, 1, " in moved
    assert moved.endswith("; slices [0, 1]")
    changed_slices = [line.split(":")[0].strip() for line in added if line.startswith("  slice")]
    assert changed_slices == ["slice out[0, 1]"]  # the one channel that moved, named by its full index


def test_counters_say_a_repo_that_could_not_load_failed_and_a_changed_golden_once(tiny_project, tiny_repo, server,
                                                                                  monkeypatch):
    run_locked(tiny_project, "--hub-update").assert_outcomes(passed=1)
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    lock = Lockfile.read(tiny_project.path / "hub.lock")
    import dataclasses

    pin = lock.repos["acme/tiny:main"]
    lock.repos["acme/tiny:main"] = dataclasses.replace(pin, commit="0" * 40)  # a commit the host does not have
    lock.write(tiny_project.path / "hub.lock")
    result = run_locked(tiny_project)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["repos: 0 checked, 1 failed, 0 recorded, 0 changed, 0 unused"])


def test_a_re_recorded_golden_is_one_line_of_the_summary(pytester):
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_conv=CONV_TEST.format(shift=0.0))
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    pytester.makepyfile(test_conv=CONV_TEST.format(shift=0.001))
    updated = run_locked(pytester, "--hub-update")
    assert [line for line in updated.outlines if "golden conv/out" in line] == [
        next(line for line in updated.outlines if line.startswith("  updated golden conv/out: "))]
