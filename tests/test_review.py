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
    # expected, obtained and difference, for b and for each of the image's 3 channels that moved
    assert page.count('src="data:image/svg+xml;base64,') == 12
    for name in ("out.b: expected", "out.b: obtained", "out.b: difference", "out.image[0, 2]: difference"):
        assert f"<figcaption>{name}</figcaption>" in page
    assert "<th>index</th><th>expected</th><th>obtained</th>" in page and "<td>[0, 0, 0, 6]</td>" in page
    assert str(project.path) not in page  # no runner path: fix commands name the lock as given
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
    assert "<title>reprohub report: 12 of 12 pictures drawn, 12 with content</title>" in shown.stdout, \
        shown.stderr[-2000:]
    assert asked == ["/files/report.html"]  # the page itself, and nothing else


def test_a_histogram_for_1_d_leaves_and_maps_of_the_moved_channel_for_images():
    import torch

    from reprohub.golden.pictures import picture

    flat = picture(torch.ones(100) + torch.linspace(0, 1, 100), torch.ones(100))
    assert flat["kind"] == "histogram" and sum(flat["counts"]) == 100
    image = torch.zeros(2, 3, 200, 100)
    moved = image.clone()
    moved[1, 2, 150, 10] = 7.0
    maps = picture(moved, image)
    assert maps["kind"] == "maps" and [panel["index"] for panel in maps["panels"]] == ["[1, 2]"]  # the channel
    heat = maps["panels"][0]["difference"]
    assert len(heat) == 48 and len(heat[0]) == 48
    hot = [(r, c) for r, row in enumerate(heat) for c, v in enumerate(row) if v == 7.0]
    # where it moved: row 150 of 200, column 10 of 100 (adaptive windows overlap by one), the rest untouched
    assert hot and {r for r, _ in hot} == {36} and {c for _, c in hot} <= {4, 5}
    assert sum(v > 0 for row in heat for v in row) == len(hot)
    assert maps["worst"] == [{"index": "[1, 2, 150, 10]", "expected": 0.0, "obtained": 7.0, "difference": 7.0}]


MODEL_TEST = """
import torch

def test_tiny(hub, golden):
    model = hub.load("acme/tiny:main", "tiny_mlp", pretrained=True).eval()
    with torch.no_grad():
        golden.check(model(golden.input(2, 3)))
"""


def _workflow_steps() -> list[str]:
    """The ``run:`` steps of the README's GitHub Actions workflow, in order."""
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("# .github/workflows/hub.yml", 1)[1].split("```", 1)[0]
    return [line.split("- run: ", 1)[1].split("  #", 1)[0].strip() for line in block.splitlines() if "- run: " in line]


def _install_as_the_workflow_does(steps: list[str], tmp_path):
    """Run the workflow's install steps into a new virtualenv, as a fresh runner does: torch as written but from
    this machine's wheels (PyPI's CPU wheel here; the step names PyTorch's index, which is out of reach), and
    reprohub as written, its pinned git URL pointing at a clone of this checkout with the tag made there (the
    runner would clone the project's repository).  Returns the venv's bin folder."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    torch_step, reprohub_step = steps
    match = re.search(r"git\+(https://github\.com/reprohub/reprohub)@(v[\w.]+)", reprohub_step)
    assert match, f"the install step pins a tag of the project's repository: {reprohub_step}"
    clone = tmp_path / "reprohub-src"
    subprocess.run(["git", "clone", "-q", str(Path(__file__).parent.parent), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "tag", "-f", match.group(2)], check=True, capture_output=True)
    venv = tmp_path / "runner-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = f"{venv}/bin/python -m pip install -q"
    for step in (torch_step.split(" --index-url")[0], reprohub_step.replace(match.group(1), "file://localhost" + str(clone))):
        done = subprocess.run(step.replace("pip install", pip, 1), shell=True, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, step + "\n" + done.stdout[-2000:] + done.stderr[-2000:]
    where = subprocess.run([f"{venv}/bin/python", "-c", "import reprohub; print(reprohub.__file__)"],
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where  # the installed copy, not this checkout
    return venv / "bin"


@pytest.mark.slow
def test_the_readme_ci_workflow_runs(pytester, server, tiny_repo, weights_url, monkeypatch, tmp_path):
    """The workflow's steps as shell commands: a fresh runner (an empty ~/.cache/torch/hub), then a runner
    whose cache was restored, with the origin down."""
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_tiny=MODEL_TEST)
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    steps = _workflow_steps()
    installs = [step for step in steps if step.startswith("pip install")]
    assert len(installs) == 2 and steps[len(installs):] == [
        "reprohub fetch --lock hub.lock", "pytest --hub-lock hub.lock --hub-offline --hub-report hub-report.html"]
    home = tmp_path / "runner-home"  # actions/cache's path is ~/.cache/torch/hub
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
    env["PATH"] = str(_install_as_the_workflow_does(installs, tmp_path)) + os.pathsep + env["PATH"]

    def job() -> list[subprocess.CompletedProcess]:
        return [subprocess.run(step, shell=True, cwd=pytester.path, env=env, capture_output=True, text=True,
                               timeout=300) for step in steps[len(installs):]]

    for done in job():  # a cold runner: fetch fills the cache from the host, the offline run passes
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (home / ".cache" / "torch" / "hub").is_dir() and (pytester.path / "hub-report.html").is_file()
    server.stop()  # the next job restores the cache (same lock, same key) and the origin is down
    for done in job():
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout


# -- the CLI finish ------------------------------------------------------------------------------------------

def _recorded_lock(pytester):
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_tiny=MODEL_TEST)
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    return pytester.path / "hub.lock"


def test_every_reporting_command_speaks_json(pytester, server, tiny_repo, weights_url, monkeypatch, tmp_path,
                                             capsys):
    import json

    from reprohub.cli import EXIT_MISMATCH, EXIT_OK, main

    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    lock = str(_recorded_lock(pytester))
    capsys.readouterr()
    golden = next((pytester.path / "goldens").rglob("*.safetensors"))
    runs = {
        "fetch": (["fetch", "--lock", lock, "--json", "--hub-dir", str(tmp_path / "h")], EXIT_OK),
        "bundle": (["bundle", str(tmp_path / "b"), "--lock", lock, "--json", "--hub-dir", str(tmp_path / "h")], EXIT_OK),
        "env": (["env", "--lock", lock, "--json"], EXIT_OK),
        "requirements": (["env", "--lock", lock, "--requirements", "--json"], EXIT_OK),
        "show": (["golden", "show", str(golden), lock, "--json"], EXIT_MISMATCH),  # hub.lock is no golden
        "diff": (["golden", "diff", str(golden), str(golden), "--json"], EXIT_OK),
    }
    out = {}
    for name, (argv, code) in runs.items():
        assert main(argv) == code, name
        out[name] = json.loads(capsys.readouterr().out)
    assert out["fetch"]["repos"][0]["spec"] == "acme/tiny:main" and out["fetch"]["repos"][0]["ok"] is True
    assert out["fetch"]["artifacts"][0]["sha256"] and out["bundle"]["written"]
    (env_id, env), = out["env"]["environments"].items()
    assert env["goldens"] and env["values"]["cpu capability"]
    assert any(line.startswith("torch==") for line in out["requirements"]["requirements"])
    assert [item["golden"] for item in out["show"]] == [True, False]
    assert out["diff"]["matches"] is True and out["diff"]["report"] == ""


def test_verbose_says_what_is_fetched_and_from_where_after_the_command_too(pytester, server, tiny_repo, weights_url,
                                                                             monkeypatch, tmp_path):
    import sys

    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    lock = str(_recorded_lock(pytester))
    done = subprocess.run([sys.executable, "-m", "reprohub", "fetch", "--lock", lock, "--hub-dir", str(tmp_path / "h"),
                           "-v"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"reprohub: downloading acme/tiny at {tiny_repo.v2[:12]} from {server.url}/" in done.stderr
    assert f'Downloading: "{weights_url}"' in done.stderr
    quiet = subprocess.run([sys.executable, "-m", "reprohub", "fetch", "--lock", lock, "--hub-dir", str(tmp_path / "q")],
                           capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "downloading" not in quiet.stderr.lower()


def test_download_url_to_file_resumes_after_ctrl_c_and_leaves_nothing_beside_the_file(server, tmp_path):
    import hashlib
    import signal

    from reprohub import Hub

    from .conftest import FAST_POLICY
    from .test_attacks import interrupt_mid_download

    out = tmp_path / "out"
    out.mkdir()
    dst = out / "weights.bin"
    url, body, partial = interrupt_mid_download(server, tmp_path, signal.SIGINT, dst=dst)  # Ctrl-C
    assert partial.stat().st_size >= 4 << 20 and not dst.exists()
    got = Hub(hub_dir=tmp_path / "hub", policy=FAST_POLICY).download_url_to_file(url, str(dst), progress=False)
    assert dst.read_bytes() == body and got.sha256 == hashlib.sha256(body).hexdigest()
    ranges = [h["Range"] for _, p, h in server.requests if p == "/files/big.bin" and "Range" in h]
    assert len(ranges) == 1 and int(ranges[0].removeprefix("bytes=").rstrip("-")) >= 4 << 20  # resumed
    assert sorted(p.name for p in out.iterdir()) == ["weights.bin"]  # no lock, partial or record left there


def test_a_resumed_download_s_speed_counts_only_the_bytes_of_this_run():
    import io

    from tqdm import tqdm

    from reprohub.fetch.progress import start_bar as _start_bar

    bar = tqdm(total=None, unit="B", file=io.StringIO(), smoothing=0)
    _start_bar(bar, 100 << 20, 90 << 20)  # 90 MiB were already there
    bar.update(1 << 20)
    shown = bar.format_dict
    assert shown["n"] == 91 << 20 and shown["n"] - shown["initial"] == 1 << 20  # the rate's numerator
    bar.close()
