"""Where a change starts (issue 37): a traced golden keeps each module call's inputs and outputs, and a failing
check runs each module again on its recorded input to name the module whose own output changed."""

from __future__ import annotations

import json
import re

import pytest
import torch

from reprohub.golden.attribution import attribute
from reprohub.golden.calls import CallRecord, calls_path, load_calls, text_path
from reprohub.golden.checker import GoldenChecker
from reprohub.golden.engine import load_golden
from reprohub.golden.store import GoldenStore


class _NoHub:
    last_repo = last_load = None
    last_nested = ()


def _check(tmp_path, model, x, update=False, key="net/traced"):
    store = GoldenStore(tmp_path / "g", tmp_path, update=update)
    checker = GoldenChecker(store, _NoHub(), tmp_path / "obtained")
    with checker.trace(model), torch.no_grad():
        out = model(x)
    return checker.check(out, key=key)


def _failure(tmp_path, model, x) -> str:
    with pytest.raises(pytest.fail.Exception) as failure:
        _check(tmp_path, model, x)
    return str(failure.value)


def _table(report: str) -> dict[str, tuple[str, str, str]]:
    """module -> (local, inherited, verdict) from the report's table."""
    rows = {}
    lines = report.split("origin: ", 1)[1].splitlines()
    for line in lines[3:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) == 5:
            rows[parts[0]] = (parts[2], parts[3], parts[4])
    return rows


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 4)).eval()


X = torch.randn(2, 8, generator=torch.Generator().manual_seed(1))


def test_a_small_change_amplified_later_is_blamed_where_it_starts(tmp_path):
    """Layer 2's bias moves by 1e-6 (inside the tolerance); layer 4 multiplies by 100: the output moves past the
    tolerance, the first module beyond it is 4, and the origin is 2."""
    _check(tmp_path, _mlp(), X, update=True)
    changed = _mlp()
    with torch.no_grad():
        changed[2].bias.add_(1e-6)
        changed[4].weight.mul_(100)
    recorded = _mlp()
    with torch.no_grad():
        recorded[4].weight.mul_(100)
    _check(tmp_path / "amplified", recorded, X, update=True)  # the golden of the x100 model, then the bias moves
    report = _failure(tmp_path / "amplified", changed, X)
    assert "first module that moved: 4 (Linear)" in report  # where it first shows
    origin_line = report.split("origin: ", 1)[1].splitlines()[0]
    assert origin_line == "2 (Linear)"  # where it starts
    rows = _table(report)
    assert rows["2"][2] == "adds" and rows["4"][2] == "inherits" and rows["4"][0] == "0"
    assert rows["(model)"][2] == "contains"  # the container of the change is not itself blamed


def test_same_machine_gives_exact_zeros_everywhere_but_the_changed_layer(tmp_path):
    _check(tmp_path, _mlp(), X, update=True)
    changed = _mlp()
    with torch.no_grad():
        changed[4].bias.add_(1e-3)  # a bias bug in the last layer
    golden = load_golden(tmp_path / "g" / "net" / "traced.safetensors")
    record = load_calls(tmp_path / "g" / "net" / "traced.safetensors", golden.metadata)
    result = attribute(record, changed, None, record.machine)
    assert result.origin == "4 (Linear)"
    local = {row.label: row.local for row in result.rows}
    assert local["4"] > 0 and local["(model)"] > 0
    assert all(local[name] == 0.0 for name in ("0", "1", "2", "3")), local


def test_uniform_input_noise_names_no_module(tmp_path):
    _check(tmp_path, _mlp(), X, update=True)
    noisy = X + 1e-3 * torch.randn(X.shape, generator=torch.Generator().manual_seed(7))
    report = _failure(tmp_path, _mlp(), noisy)
    assert "origin: none (drift from the input)" in report
    assert "the first call handed a different input is (model) (Sequential)" in report


class _Block(torch.nn.Module):
    """A nested block whose Linear is called twice (weights shared), and a BatchNorm conv stem."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
        self.shared = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x, scale=1.0):
        h = self.stem(x).mean(dim=(2, 3))
        h = self.shared(self.shared(h) * scale)
        return {"logits": self.head(h), "features": (h,)}


def _block():
    torch.manual_seed(3)
    block = _Block()
    block.stem[1].running_mean.uniform_(-0.1, 0.1)
    return block.eval()


def test_a_module_called_twice_is_attributed_per_call_and_a_nested_block_is_not_blamed(tmp_path):
    x = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(4))
    _check(tmp_path, _block(), x, update=True)
    changed = _block()
    with torch.no_grad():
        changed.stem[1].running_mean.add_(0.05)  # BatchNorm's statistics: the stem's second module
    report = _failure(tmp_path, changed, x)
    assert report.split("origin: ", 1)[1].splitlines()[0] == "stem.1 (BatchNorm2d)"
    rows = _table(report)
    assert rows["stem"][2] == "contains" and rows["(model)"][2] == "contains"
    assert rows["shared"][2] == "inherits" and rows["shared#2"][2] == "inherits"  # both calls, each its own row


def test_records_stay_within_the_budget_and_are_byte_identical(tmp_path, monkeypatch):
    _check(tmp_path / "a", _mlp(), X, update=True)
    _check(tmp_path / "b", _mlp(), X, update=True)
    first, second = (calls_path(p / "g" / "net" / "traced.safetensors") for p in (tmp_path / "a", tmp_path / "b"))
    assert first.read_bytes() == second.read_bytes()
    assert (tmp_path / "a" / "g" / "net" / "traced.safetensors").read_bytes() == \
        (tmp_path / "b" / "g" / "net" / "traced.safetensors").read_bytes()
    lines = text_path(tmp_path / "a" / "g" / "net" / "traced.safetensors").read_text().splitlines()
    assert lines[0].startswith("# module calls kept with this golden: 6 of 6")
    assert lines[3].startswith("#0002 1 (ReLU, eval) in args[0] float32 [2, 8]")

    monkeypatch.setenv("REPROHUB_TRACE_BUDGET_MIB", str(200 / (1 << 20)))  # 200 bytes: the first calls only
    _check(tmp_path / "small", _mlp(), X, update=True)
    golden = tmp_path / "small" / "g" / "net" / "traced.safetensors"
    record = load_calls(golden, load_golden(golden).metadata)
    stored = sum(t.numel() * t.element_size() for t in record.tensors.values())
    assert stored <= 200 and 0 < len(record.calls) < record.total == 6
    changed = _mlp()
    with torch.no_grad():
        changed[0].bias.add_(1e-3)
    report = _failure(tmp_path / "small", changed, X)
    assert f"{6 - len(record.calls)} of 6 calls were not kept within the trace budget" in report


def test_an_edited_record_is_not_used(tmp_path):
    _check(tmp_path, _mlp(), X, update=True)
    record = calls_path(tmp_path / "g" / "net" / "traced.safetensors")
    data = bytearray(record.read_bytes())
    data[-1] ^= 1  # one bit of a stored tensor
    record.write_bytes(bytes(data))
    changed = _mlp()
    with torch.no_grad():
        changed[2].bias.add_(1e-3)
    report = _failure(tmp_path, changed, X)
    assert "origin: not attributed" in report and "named by its golden" in report


def test_another_machine_class_ranks_and_shows_three_when_none_stands_out(tmp_path):
    _check(tmp_path, _mlp(), X, update=True)
    golden = tmp_path / "g" / "net" / "traced.safetensors"
    record = load_calls(golden, load_golden(golden).metadata)
    drifted = CallRecord(record.calls, {name: (t * (1 + 3e-7) if t.is_floating_point() else t)
                                        for name, t in record.tensors.items()}, "cpu-avx512", record.total,
                         record.budget)  # every recorded output a few ulp away, as other kernels give
    result = attribute(drifted, _mlp(), None, "cpu-avx2")
    assert result.origin == "unclear"
    assert "kernels differ (recorded on cpu-avx512, here cpu-avx2)" in result.why
    assert result.why.count("(Linear)") + result.why.count("(ReLU)") + result.why.count("(Sequential)") == 3
    changed = _mlp()
    with torch.no_grad():
        changed[2].bias.add_(1e-2)
    standing = attribute(drifted, changed, None, "cpu-avx2")
    assert standing.origin == "2 (Linear)" and "over 10x any other" in standing.why


def test_the_cli_shows_the_kept_calls(tmp_path, capsys):
    from reprohub.cli import main

    _check(tmp_path, _mlp(), X, update=True)
    golden = tmp_path / "g" / "net" / "traced.safetensors"
    assert main(["golden", "trace", str(golden)]) == 0
    shown = capsys.readouterr().out
    assert "#0003 2 (Linear, eval)" in shown
    assert main(["golden", "trace", str(golden), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["module"] for c in listed["calls"]] == ["(model)", "0", "1", "2", "3", "4"]
    assert listed["kept"] == listed["total"] == 6


def test_a_failing_check_runs_the_calls_again_without_moving_running_statistics(tmp_path):
    """A check that does not record copies only the test's own calls; a failure runs them again under a full
    trace for its report, and a train-mode BatchNorm's running statistics stay as the test's forward left them."""
    def net():
        torch.manual_seed(5)
        return torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).train()

    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(6))
    _check(tmp_path, net(), x, update=True)
    changed = net()
    with torch.no_grad():
        changed[2].bias.add_(1e-2)
    store = GoldenStore(tmp_path / "g", tmp_path)
    checker = GoldenChecker(store, _NoHub(), tmp_path / "obtained")
    with checker.trace(changed), torch.no_grad():
        out = changed(x)
    assert checker._trace.calls.entry_only and len(checker._trace.calls.calls) == 1  # only the test's call
    after_forward = changed[1].running_mean.clone()
    with pytest.raises(pytest.fail.Exception) as failure:
        checker.check(out, key="net/traced")
    assert "origin: 2 (Linear)" in str(failure.value)
    assert "first module that moved: 2 (Linear)" in str(failure.value)  # the fingerprints, from the replay
    assert torch.equal(changed[1].running_mean, after_forward)


TRACED_TEST = """
import os
import torch

def test_mlp(golden):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4)).eval()
    with torch.no_grad():
        net[2].bias.add_(float(os.environ.get("BIAS_BUG", "0")))
        with golden.trace(net):
            out = net(golden.input(2, 8))
    golden.check(out, key="mlp/out")
"""


def test_the_origin_reaches_the_summary_the_html_report_and_the_job_summary(pytester, monkeypatch, tmp_path):
    from tests.conftest import run_locked

    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_traced=TRACED_TEST)
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    assert (pytester.path / "goldens" / "mlp" / "out+calls.safetensors").is_file()
    assert (pytester.path / "goldens" / "mlp" / "out+calls.txt").read_text().count("\n#") == 4  # (model), 0, 1, 2
    monkeypatch.setenv("BIAS_BUG", "1e-3")
    summary = tmp_path / "step_summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    failed = run_locked(pytester, "--hub-report", "report.html")
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*origin: 2 (Linear)*", "*golden mlp/out: origin: 2 (Linear)*"])
    page = (pytester.path / "report.html").read_text()
    assert "<h3>origin: 2 (Linear)</h3>" in page
    assert page.count('title="local: ') == 4 and 'title="local: 0"' not in page.split("<td>2</td>")[1][:400]
    assert "- mlp/out: origin: 2 (Linear)" in summary.read_text()


@pytest.mark.slow
def test_records_are_byte_identical_across_xdist_workers(pytester):
    """Two traced tests recorded with -n 2 (each on its own worker) and again in one process: the same bytes."""
    import shutil

    from tests.conftest import run_locked

    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    second = TRACED_TEST.replace("def test_mlp", "def test_mlp_again").replace('"mlp/out"', '"mlp/again"')
    pytester.makepyfile(test_traced=TRACED_TEST + second)
    run_locked(pytester, "--hub-update", "-n", "2").assert_outcomes(passed=2)
    folder = pytester.path / "goldens" / "mlp"
    with_xdist = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    assert {"out+calls.safetensors", "again+calls.safetensors", "out+calls.txt"} <= set(with_xdist)
    shutil.rmtree(pytester.path / "goldens")
    (pytester.path / "hub.lock").unlink()
    run_locked(pytester, "--hub-update").assert_outcomes(passed=2)
    assert {p.name: p.read_bytes() for p in sorted(folder.iterdir())} == with_xdist
