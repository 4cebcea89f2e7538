"""Review where review happens: a golden change readable in a plain diff, in the CI job's summary and in a
self-contained HTML report opened by a real browser."""

import os
import re
import shutil
import subprocess

import pytest

from reprohub.testing.server import HubServer

from .conftest import run_locked

TWO_LEAVES = """
import os, torch

def test_two(golden):
    moved = float(os.environ.get("MOVE_B", "0"))
    golden.check({"a": torch.arange(4.0), "b": torch.zeros(2, 3) + moved,
                  "image": torch.zeros(1, 3, 8, 8) + moved * (torch.arange(8.0) > 5)}, key="pair/out")
"""


@pytest.fixture
def project(pytester):
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_two=TWO_LEAVES)
    return pytester


def _git(project, *args) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_SYSTEM": os.devnull}
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=project.path, env=env,
                          check=True, capture_output=True, text=True).stdout


def test_a_plain_git_diff_names_the_leaf_that_moved_with_old_and_new_numbers(project, monkeypatch):
    run_locked(project, "--hub-update").assert_outcomes(passed=1)
    companion = project.path / "goldens" / "pair" / "out.golden.txt"
    assert companion.is_file() and "leaf out.b: float32 [2, 3]" in companion.read_text()
    _git(project, "init", "-q")
    _git(project, "add", "goldens", "hub.lock")
    _git(project, "commit", "-qm", "goldens")
    monkeypatch.setenv("MOVE_B", "1.5")
    updated = run_locked(project, "--hub-update")
    updated.assert_outcomes(passed=1)
    updated.stdout.fnmatch_lines(["  updated golden pair/out: 2 of 3 leaves changed (out.b: max abs 1.5, max rel *, "
                                  "6 of 6 elements beyond rtol 1.3e-06 / atol 1e-05; out.image: max abs 1.5*"])
    diff = _git(project, "diff", "--", "goldens")  # no textconv, no attributes: what a hosted PR shows
    removed = [line for line in diff.splitlines() if line.startswith("-leaf out.b")]
    added = [line for line in diff.splitlines() if line.startswith("+leaf out.b")]
    assert removed and removed[0].endswith("values 0 0 0 0 0 0")
    assert added and added[0].endswith("values 1.5 1.5 1.5 1.5 1.5 1.5") and "max 1.5" in added[0]
    assert not any(line.startswith(("-leaf out.a", "+leaf out.a")) for line in diff.splitlines())  # unmoved


def test_a_failing_check_writes_the_ci_job_summary(project, monkeypatch, tmp_path):
    run_locked(project, "--hub-update").assert_outcomes(passed=1)
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("MOVE_B", "0.25")
    run_locked(project).assert_outcomes(failed=1)
    text = summary.read_text()
    assert text.startswith("earlier step\n## reprohub")  # appended, as GitHub asks
    assert "| test | golden | outcome | leaf | max abs | max rel | beyond tolerance |" in text
    assert "| test_two.py::test_two | pair/out | failed | out.b | 0.25 | " in text
    assert "6 of 6 elements beyond rtol 1.3e-06 / atol 1e-05 |" in text
    assert "If the change is intended: `pytest --hub-lock" in text and "--hub-update`" in text


def test_the_html_report_renders_its_pictures_offline_in_a_real_browser(project, monkeypatch, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):  # .ci/run installs it: a CI run without it must not pass by skipping
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install chromium)")
    run_locked(project, "--hub-update").assert_outcomes(passed=1)
    monkeypatch.setenv("MOVE_B", "0.25")
    failed = run_locked(project, "--hub-report", "report.html")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["report: *report.html (1 goldens failed or changed)"])
    page = (project.path / "report.html").read_text()
    assert "<td>out.b</td><td>max abs 0.25" in page and "pair/out: failed" in page
    assert page.count('src="data:image/svg+xml;base64,') == 2  # a histogram for b... and a heatmap for the image
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing but data: URLs
    with HubServer() as host:  # served over HTTP, so every request the page makes is seen
        url = host.add_file("report.html", page.encode())
        profile = tmp_path / "chromium-profile"
        shown = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
             f"--user-data-dir={profile}", "--virtual-time-budget=2000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
        asked = [path for _, path, _ in host.requests]
    assert "<title>reprohub report: 2 of 2 pictures drawn</title>" in shown.stdout, shown.stderr[-2000:]
    assert asked == ["/files/report.html"]  # the page itself, and nothing else


def test_a_histogram_for_1_d_leaves_and_a_heatmap_for_images():
    import torch

    from reprohub.golden.review import picture

    flat = picture(torch.ones(100) + torch.linspace(0, 1, 100), torch.ones(100))
    assert flat["kind"] == "histogram" and sum(flat["counts"]) == 100
    image = torch.zeros(2, 3, 200, 100)
    moved = image.clone()
    moved[1, 2, 150, 10] = 7.0
    heat = picture(moved, image)
    assert heat["kind"] == "heatmap" and len(heat["cells"]) == 48 and len(heat["cells"][0]) == 48
    hot = [(r, c) for r, row in enumerate(heat["cells"]) for c, v in enumerate(row) if v == 7.0]
    # where it moved: row 150 of 200, column 10 of 100 (adaptive windows overlap by one), the rest untouched
    assert hot and {r for r, _ in hot} == {36} and {c for _, c in hot} <= {4, 5}
    assert sum(v > 0 for row in heat["cells"] for v in row) == len(hot)
