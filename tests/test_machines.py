"""Goldens across machines: the numeric stack in the record, the first layer that moved, variants per class.

Another CPU is simulated the way torch itself allows: ``ATEN_CPU_CAPABILITY`` (read once, at torch's
start) makes a fresh process dispatch to the ``default``, ``avx2`` or ``avx512`` kernels, so those runs
are subprocesses.
"""

import json
import subprocess
import sys

import pytest
import torch

from reprohub.cli import EXIT_OK, main
from reprohub.golden.checker import GoldenChecker
from reprohub.golden.engine import load_golden
from reprohub.golden.environment import capture
from reprohub.golden.store import GoldenStore
from reprohub.lock.lockfile import Lockfile

from .conftest import run_locked, serve_repo

CONVNET_TEST = """
import torch

def convnet():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(8 * 14 * 14, 32), torch.nn.Linear(32, 10)).eval()

def test_convnet(golden):
    model = convnet()
    with torch.no_grad():
        out = model(golden.input(2, 3, 16, 16))
    golden.check(out, key="convnet/logits")
"""


def _capability(value: str) -> str:
    """What torch reports in a fresh process with ATEN_CPU_CAPABILITY=value ('' where it is not supported)."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    env = {"ATEN_CPU_CAPABILITY": value, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip()


def _run_as(project, monkeypatch, capability: str, *args):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", capability)
    return project.runpytest_subprocess("-p", "no:cacheprovider", "--hub-lock", "hub.lock", *args)


@pytest.fixture
def convnet_project(pytester):
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_convnet=CONVNET_TEST)
    return pytester


@pytest.mark.slow
def test_the_record_names_the_cpu_and_its_kernels_and_strict_env_names_both_capabilities(convnet_project,
                                                                                         monkeypatch):
    if _capability("avx2") != "AVX2":
        pytest.skip("this CPU has no AVX2 kernels to force")
    _run_as(convnet_project, monkeypatch, "avx2", "--hub-update").assert_outcomes(passed=1)
    lock = Lockfile.read(convnet_project.path / "hub.lock")
    (env,) = [pin.values for pin in lock.environments.values()]
    assert env["cpu capability"] == "AVX2" and env["ATEN_CPU_CAPABILITY"] == "avx2"
    assert env["cpu"] == capture()["cpu"] and env["cpu"] not in ("", "unknown")
    assert {"blas", "lapack", "onednn", "threads", "CUBLAS_WORKSPACE_CONFIG"} <= set(env)
    _run_as(convnet_project, monkeypatch, "default").assert_outcomes(passed=1)  # default tolerances: passes
    strict = _run_as(convnet_project, monkeypatch, "default", "--hub-strict-env")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*cpu capability AVX2 -> DEFAULT*"])
    strict.stdout.fnmatch_lines(["*ATEN_CPU_CAPABILITY avx2 -> default*"])


@pytest.mark.slow
def test_a_variant_is_chosen_on_its_class_and_the_fallback_is_named_on_another(convnet_project, monkeypatch):
    if _capability("avx2") != "AVX2" or _capability("avx512") != "AVX512":
        pytest.skip("this CPU lacks AVX2 or AVX512 kernels: three classes cannot be made here")
    golden_dir = convnet_project.path / "goldens" / "convnet"
    _run_as(convnet_project, monkeypatch, "default", "--hub-update").assert_outcomes(passed=1)
    base = (golden_dir / "logits.safetensors").read_bytes()
    _run_as(convnet_project, monkeypatch, "avx2", "--hub-update", "--hub-variant").assert_outcomes(passed=1)
    assert (golden_dir / "logits.safetensors").read_bytes() == base  # the other class's golden is left alone
    variant = load_golden(golden_dir / "logits.cpu-avx2.safetensors")
    assert json.loads(variant.metadata["environment"])["cpu capability"] == "AVX2"
    assert sorted(Lockfile.read(convnet_project.path / "hub.lock").goldens) == ["convnet/logits",
                                                                              "convnet/logits@cpu-avx2"]
    on_avx2 = _run_as(convnet_project, monkeypatch, "avx2")
    on_avx2.assert_outcomes(passed=1)
    on_avx2.stdout.fnmatch_lines(["*golden convnet/logits@cpu-avx2: compared with the variant for cpu-avx2*"])
    on_avx512 = _run_as(convnet_project, monkeypatch, "avx512")
    on_avx512.assert_outcomes(passed=1)
    on_avx512.stdout.fnmatch_lines(["*golden convnet/logits: no variant of golden 'convnet/logits' for cpu-avx512: "
                                    "compared with logits.safetensors, recorded on cpu-default, under the "
                                    "cross-device tolerance*"])


# -- the first layer that moved -------------------------------------------------------------------------

class _NoHub:
    last_repo = last_load = None
    last_nested = ()


def _checked(store, model, x):
    checker = GoldenChecker(store, _NoHub(), store.root / "obtained")
    with checker.trace(model), torch.no_grad():
        out = model(x)
    return checker.check(out, key="convnet/traced")


def _convnet():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * 6 * 6, 16), torch.nn.Linear(16, 5)).eval()


def test_a_traced_golden_names_the_first_module_that_moved_and_not_the_earlier_ones(tmp_path):
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert _checked(GoldenStore(tmp_path / "g", tmp_path, update=True), _convnet(), x) == "recorded"
    assert _checked(GoldenStore(tmp_path / "g", tmp_path), _convnet(), x) == "matched"
    changed = _convnet()
    with torch.no_grad():
        changed[4].weight.mul_(1.001)  # the last Linear, slightly
    with pytest.raises(pytest.fail.Exception) as failure:
        _checked(GoldenStore(tmp_path / "g", tmp_path), changed, x)
    report = str(failure.value)
    assert "first module that moved: 4 (Linear): greatest difference" in report
    before = report.split("modules before it still matched: ", 1)[1].splitlines()[0]
    assert before == "0 (Conv2d), 1 (ReLU), 2 (Flatten), 3 (Linear)"


def test_a_change_early_in_the_model_is_named_there(tmp_path):
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    _checked(GoldenStore(tmp_path / "g", tmp_path, update=True), _convnet(), x)
    changed = _convnet()
    with torch.no_grad():
        changed[0].bias.add_(0.01)
    with pytest.raises(pytest.fail.Exception, match=r"first module that moved: 0 \(Conv2d\).*first traced module"):
        _checked(GoldenStore(tmp_path / "g", tmp_path), changed, x)


def test_a_trace_stays_bounded_and_reads_as_one_line_in_golden_show(tmp_path, capsys, monkeypatch):
    from reprohub.golden import trace

    deep = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(trace.MAX_CALLS + 50)])
    with trace.Tracer(deep) as tracer, torch.no_grad():
        deep(torch.ones(1, 8))
    found = tracer.fingerprints()
    assert len(found) == trace.MAX_CALLS + 1 and found[-1] == {"module": trace.TRUNCATED}
    assert all(len(e.get("values", [])) <= trace.SAMPLE for e in found)
    # every call kept in the call record: the fingerprints are not stored twice
    _checked(GoldenStore(tmp_path / "g", tmp_path, update=True), _convnet(), torch.ones(1, 3, 8, 8))
    assert main(["golden", "show", str(tmp_path / "g" / "convnet" / "traced.safetensors")]) == EXIT_OK
    shown = capsys.readouterr().out.splitlines()
    assert not [line for line in shown if line.startswith("meta trace")]
    assert [line for line in shown if line.startswith("meta calls_header_sha256: ")]
    # a record over its budget keeps fewer calls: then the golden holds the fingerprints, shown as one line
    monkeypatch.setenv("REPROHUB_TRACE_BUDGET_MIB", "0")
    _checked(GoldenStore(tmp_path / "small", tmp_path, update=True), _convnet(), torch.ones(1, 3, 8, 8))
    assert main(["golden", "show", str(tmp_path / "small" / "convnet" / "traced.safetensors")]) == EXIT_OK
    shown = [line for line in capsys.readouterr().out.splitlines() if line.startswith("meta trace")]
    assert shown == ["meta trace: 6 module calls, 0 (Conv2d) to (model) (Sequential)"]


# -- the whole software stack ----------------------------------------------------------------------------

UNDECLARED = """
import torch
import tqdm                          # used, never named in dependencies (as yolov5 with pandas)
from responses import RequestsMock   # a name from a package, not the module

dependencies = ["torch"]

def ident():
    return torch.nn.Identity()
"""

UNDECLARED_TEST = """
def test_ident(hub, golden):
    model = hub.load("acme/undeclared:main", "ident")
    golden.check(model(golden.input(2, 3)))
"""


def test_env_requirements_list_what_a_hubconf_imports_without_declaring_it(pytester, server, tmp_path,
                                                                           monkeypatch, capsys):
    from importlib.metadata import version

    serve_repo(server, tmp_path, "acme/undeclared", {"hubconf.py": UNDECLARED})
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_undeclared=UNDECLARED_TEST)
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    (env,) = [pin.values for pin in Lockfile.read(pytester.path / "hub.lock").environments.values()]
    assert env["import tqdm"] == version("tqdm") and env["import responses"] == version("responses")
    assert "import torch" not in env and env["dep torch"] == env["torch"]  # no field twice
    assert main(["env", "--lock", str(pytester.path / "hub.lock"), "--requirements"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert f"tqdm=={version('tqdm')}" in lines and f"responses=={version('responses')}" in lines


def test_the_cross_environment_floor_applies_to_cpu_outputs_too(tmp_path):
    """The floor was handed to the engine as a cross-*device* floor, which the engine applied to GPU outputs
    only: a CPU golden from another environment was held to the same-environment tolerance."""
    GoldenStore(tmp_path, tmp_path, update=True).check(torch.ones(3), "k", {}, dependencies=["numpy"])
    moved = torch.ones(3) + 5e-5  # beyond float32's 1e-5 + 1.3e-6 x |1|, within a 1e-4 floor
    with pytest.raises(AssertionError, match="values differ"):  # same environment: the default tolerance
        GoldenStore(tmp_path, tmp_path, cross_env=(1e-4, 1e-4)).check(moved, "k", {}, dependencies=["numpy"])
    # another environment (the repo no longer names numpy): the floor applies
    assert GoldenStore(tmp_path, tmp_path, cross_env=(1e-4, 1e-4)).check(moved, "k", {}) == "matched"
