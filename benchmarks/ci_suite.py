"""What a CI job pays: N tests that each load a small hub model from a warm cache and run it, in fresh
pytest processes, three ways side by side (issue 20):

* ``torch.hub``: the tests call ``torch.hub.load`` (the baseline);
* ``plugin``: the ``hub`` fixture, ``pytest --hub-lock hub.lock --hub-offline``;
* ``plugin + goldens``: the same, each test also ``golden.check(model(golden.input(4, W)))``.

Every run is a new ``python -m pytest`` process (imports included, as in CI); rounds are interleaved.  Each
timed run also times every test in-process (``per_test_timer.py``): ``test_ms`` is the median test's whole
protocol, start-up left out, and ``test_vs_torch_hub`` its ratio -- far steadier than whole processes here.

    python benchmarks/ci_suite.py --tests 200 --rounds 3
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, child_env, interleave, suite_main  # noqa: E402

TORCH_HUB_CONFTEST = """
import os, torch.hub
torch.hub._git_archive_link = lambda o, n, ref: f"{os.environ['BENCH_API']}/repos/{o}/{n}/zipball/{ref}"
"""

TESTS = {
    "torch.hub": """
import pytest, torch, torch.hub

@pytest.mark.parametrize("i", range({n}))
def test_model(i):
    model = torch.hub.load("acme/big:main", "big", trust_repo=True, skip_validation=True, verbose=False)
    with torch.no_grad():
        model(torch.randn(4, {width}))
""",
    "plugin": """
import pytest, torch

@pytest.mark.parametrize("i", range({n}))
def test_model(hub, i):
    model = hub.load("acme/big:main", "big", verbose=False)
    with torch.no_grad():
        model(torch.randn(4, {width}))
""",
    "plugin + goldens": """
import pytest, torch

@pytest.mark.parametrize("i", range({n}))
def test_model(hub, golden, i):
    model = hub.load("acme/big:main", "big", verbose=False)
    with torch.no_grad():
        golden.check(model(golden.input(4, {width})))
""",
}


def ci_suite(work: Path, tests: int, rounds: int, width: int = 350) -> list[Row]:
    """Rows for the three variants (the baseline is torch.hub), each a fresh pytest process per round."""
    from cases import model_host

    with model_host(work, width) as (server, _):
        projects = {name: _project(work / f"ci-{i}", name, tests, width, server) for i, name in enumerate(TESTS)}
        runs = {name: (lambda p=p: _pytest(*p)) for name, p in projects.items()}
        for run in runs.values():
            run()  # warm every cache (and the OS's page cache) once, untimed
        for folder, env, _ in projects.values():  # timed runs also time each test alone (per_test_timer.py)
            env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")])),
                       PER_TEST_OUT=str(folder / "per-test.txt"))
        rows = interleave(f"CI suite, {tests} tests (warm cache)", runs, rounds, baseline="torch.hub")
    base = next(row for row in rows if row.baseline)
    per_test = {name: _median_per_test(p[0] / "per-test.txt") for name, p in projects.items()}
    for row in rows:  # each process pays ~5 s of start-up (python, pytest, torch) alike: the difference is per test
        row.extra["ms_per_test_over_torch_hub"] = round((row.median - base.median) / tests * 1000, 2)
        # in-process, start-up left out: far less noisy than the difference of whole-process times
        row.extra["test_ms"] = round(per_test[row.contender] / 1000, 3)
        row.extra["test_vs_torch_hub"] = round(per_test[row.contender] / per_test["torch.hub"], 2)
    return rows


def _median_per_test(path: Path) -> float:
    """The median over runs of each run's median test (microseconds)."""
    return statistics.median(float(line) for line in path.read_text().split())


def _project(folder: Path, variant: str, tests: int, width: int, server) -> tuple[Path, dict, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_models.py").write_text(textwrap.dedent(TESTS[variant]).format(n=tests, width=width))
    (folder / "pytest.ini").write_text("[pytest]\nhub_golden_dir = goldens\n")
    env = child_env(folder.parent, TORCH_HOME=str(folder / "torch-home"), REPROHUB_TRUST="all",
                    BENCH_API=server.api_url, REPROHUB_GITHUB_API_URL=server.api_url)
    if variant == "torch.hub":
        (folder / "conftest.py").write_text(TORCH_HUB_CONFTEST)
        return folder, env, []
    _pytest(folder, env, ["--hub-lock", "hub.lock", "--hub-update"])  # record the lock (and goldens) once
    return folder, env, ["--hub-lock", "hub.lock", "--hub-offline"]


def _pytest(folder: Path, env: dict, args: list[str]) -> None:
    timer = ["-p", "per_test_timer"] if "PER_TEST_OUT" in env else []
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *timer, *args],
                          cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"pytest failed in {folder}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")


def main(argv=None) -> int:
    return suite_main(__doc__, ci_suite, argv)


if __name__ == "__main__":
    sys.exit(main())
