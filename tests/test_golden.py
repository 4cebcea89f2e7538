"""Golden storage and comparison: every dtype, nested structures, NaN, each kind of mismatch, Hypothesis."""

import collections
import dataclasses
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reprohub.errors import GoldenMismatchError, GoldenMissingError, LockMismatchError
from reprohub.golden.engine import Golden, assert_matches, compare, flatten, load_golden, save_golden
from reprohub.golden.store import GoldenStore
from reprohub.lock.lockfile import Lockfile
from reprohub.lock.session import LockSession

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.complex64, torch.complex128,
              torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool, torch.float8_e4m3fn,
              torch.uint16, torch.uint32]
Out = collections.namedtuple("Out", "logits hidden")


@dataclasses.dataclass
class Result:
    score: torch.Tensor
    label: str


def sample(dtype, shape=(3, 4), seed=0):
    gen = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        return torch.randn(shape, dtype=dtype, generator=gen)
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    if dtype == torch.bool:
        return torch.rand(shape, generator=gen) > 0.5
    return torch.randint(0, 100, shape, generator=gen).to(dtype)


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_every_dtype_round_trips_bit_exactly(tmp_path, dtype):
    t = sample(dtype)
    save_golden(tmp_path / "g.safetensors", {"t": t, "empty": torch.zeros(0, 5, dtype=dtype)})
    loaded = load_golden(tmp_path / "g.safetensors").leaves
    assert loaded["out.t"].dtype == dtype and loaded["out.t"].shape == t.shape
    assert torch.equal(loaded["out.t"].view(torch.uint8), t.view(torch.uint8))
    assert loaded["out.empty"].shape == (0, 5)


def test_nested_structures_keep_their_keys(tmp_path):
    output = {"a": Out(torch.ones(2), [torch.zeros(1), 3, 2.5]), "weird key": Result(torch.ones(1), "cat"),
              "none": None, "c": 1 + 2j, "inf": math.inf}
    assert sorted(flatten(output)) == sorted([
        "out.a.logits", "out.a.hidden[0]", "out.a.hidden[1]", "out.a.hidden[2]", "out['weird key'].score",
        "out['weird key'].label", "out.none", "out.c", "out.inf"])
    save_golden(tmp_path / "g.safetensors", output, {"commit": "abc"})
    golden = load_golden(tmp_path / "g.safetensors")
    assert compare(output, golden).ok and golden.metadata["commit"] == "abc"


def test_nan_is_a_mismatch_unless_equal_nan(tmp_path):
    t = torch.tensor([1.0, float("nan"), float("inf")])
    golden = Golden({"out": t.clone()}, {})
    assert not compare(t, golden).ok
    assert compare(t, golden, equal_nan=True).ok


@pytest.mark.parametrize("obtained,reason", [
    ({"x": torch.ones(3) + 1, "y": torch.ones(2)}, "values differ"),
    ({"x": torch.ones(3, dtype=torch.float64), "y": torch.ones(2)}, "dtype differs: golden torch.float32"),
    ({"x": torch.ones(4), "y": torch.ones(2)}, "shape differs: golden (3,), output (4,)"),
    ({"x": torch.ones(3)}, "missing from the output"),
    ({"x": torch.ones(3), "y": torch.ones(2), "z": 1}, "extra in the output"),
])
def test_each_kind_of_mismatch_has_its_message(obtained, reason):
    golden = Golden({"out.x": torch.ones(3), "out.y": torch.ones(2)}, {})
    with pytest.raises(GoldenMismatchError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        assert_matches(obtained, golden)


def test_failure_report_is_torch_style():
    expected = torch.zeros(100, 100)
    actual = expected.clone()
    actual[3, 7] = 0.5
    actual[50, 50] = -2.0
    report = compare({"logits": actual}, Golden({"out.logits": expected}, {})).message("g.safetensors", "abc123")
    assert "Mismatched elements: 2 / 10000 (0.0%)" in report
    assert "Greatest absolute difference: 2 at index (50, 50) (up to 1e-05 allowed)" in report
    assert "Mean absolute error: 0.00025" in report and "(3, 7)" in report and "abc123" in report


def test_tolerances_per_call_and_per_leaf():
    golden = Golden({"out.a": torch.ones(3), "out.b": torch.ones(3)}, {})
    near = {"a": torch.ones(3) + 1e-3, "b": torch.ones(3) + 1e-3}
    assert not compare(near, golden).ok
    assert compare(near, golden, atol=1e-2).ok
    partial = compare(near, golden, tolerances={"out.a": (0, 1e-2)})
    assert [d.key for d in partial.diffs] == ["out.b"]


def test_integers_are_compared_exactly():
    assert not compare(torch.tensor([1, 2, 4]), Golden({"out": torch.tensor([1, 2, 3])}, {})).ok


def test_chunked_comparison_finds_a_late_mismatch(monkeypatch):
    import reprohub.golden.values as golden_module

    monkeypatch.setattr(golden_module, "CHUNK_ELEMENTS", 1000)
    expected = torch.zeros(10_000)
    actual = expected.clone()
    actual[9_876] = 1.0
    report = compare(actual, Golden({"out": expected}, {})).message()
    assert "Mismatched elements: 1 / 10000" in report and "at index (9876,)" in report


tensors = st.builds(
    lambda dtype, shape, seed: sample(dtype, shape, seed),
    st.sampled_from([torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int32, torch.bool]),
    st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple), st.integers(0, 5))
structures = st.recursive(tensors | st.integers(-5, 5) | st.floats(-10, 10),
                          lambda inner: st.lists(inner, min_size=1, max_size=3)
                          | st.dictionaries(st.sampled_from(["a", "b", "logits", "x y"]), inner, min_size=1, max_size=3),
                          max_leaves=6)


@settings(max_examples=60, deadline=None)
@given(structures, st.data())
def test_record_then_compare_passes_and_one_perturbation_is_located(tmp_path_factory, output, data):
    path = tmp_path_factory.mktemp("g") / "g.safetensors"
    save_golden(path, output)
    golden = load_golden(path)
    assert compare(output, golden).ok
    leaves = {k: v for k, v in flatten(output).items()
              if isinstance(v, torch.Tensor) and v.numel() and v.dtype.is_floating_point}
    if not leaves:
        return
    key = data.draw(st.sampled_from(sorted(leaves)))
    index = data.draw(st.integers(0, leaves[key].numel() - 1))
    perturbed = leaves[key].clone()
    perturbed.view(-1)[index] += 100.0
    result = compare(_replace(output, key, perturbed), golden)
    assert [d.key for d in result.diffs] == [key]
    where = tuple(int(i) for i in torch.unravel_index(torch.tensor(index), perturbed.shape))
    assert re.search(rf"Greatest absolute difference: \S+ at index {re.escape(str(where))}", result.diffs[0].detail)


def _replace(output, key, value, prefix="out"):
    if prefix == key:
        return value
    if isinstance(output, dict):
        return {k: _replace(v, key, value, prefix + (f".{k}" if k.isidentifier() else f"[{k!r}]"))
                for k, v in output.items()}
    if isinstance(output, list):
        return [_replace(v, key, value, f"{prefix}[{i}]") for i, v in enumerate(output)]
    return output


def test_store_records_checks_and_pins(tmp_path):
    session = LockSession(Lockfile(), str(tmp_path / "hub.lock"), update=True)
    recorder = GoldenStore(tmp_path / "goldens", tmp_path, session, update=True)
    assert recorder.check(torch.ones(3), "acme/m/f", {"commit": "c"}) == "recorded"
    pin = session.recorded.goldens["acme/m/f"]
    assert pin.file == "goldens/acme/m/f.safetensors"
    checker = GoldenStore(tmp_path / "goldens", tmp_path, LockSession(session.result(), "hub.lock"))
    assert checker.check(torch.ones(3), "acme/m/f", {}) == "matched"
    with pytest.raises(GoldenMismatchError, match="if the change is intended"):
        checker.check(torch.ones(3) * 2, "acme/m/f", {})
    with pytest.raises(GoldenMissingError, match="no such file"):
        checker.check(torch.ones(3), "acme/m/other", {})
    (tmp_path / "goldens/acme/m/f.safetensors").write_bytes(
        save_golden(tmp_path / "x.safetensors", torch.ones(3), {"edited": "by hand"}))
    with pytest.raises(LockMismatchError, match="golden acme/m/f with sha256"):
        checker.check(torch.ones(3), "acme/m/f", {})


def test_unchanged_golden_is_not_rewritten_on_update(tmp_path):
    store = GoldenStore(tmp_path, tmp_path, LockSession(Lockfile(), "hub.lock", update=True), update=True)
    store.check(torch.ones(3), "k", {"torch": "1"})
    before = (tmp_path / "k.safetensors").stat().st_mtime_ns
    assert store.check(torch.ones(3), "k", {"torch": "2"}) == "matched"
    assert (tmp_path / "k.safetensors").stat().st_mtime_ns == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
def test_cuda_output_against_cpu_golden_uses_cross_device_tolerance(tmp_path):
    store = GoldenStore(tmp_path, tmp_path, update=True)
    store.check(torch.ones(3), "k", {})
    reader = GoldenStore(tmp_path, tmp_path, cross_device=(1e-3, 1e-3))
    assert reader.check(torch.ones(3, device="cuda") + 1e-4, "k", {}) == "matched"
    with pytest.raises(GoldenMismatchError):
        GoldenStore(tmp_path, tmp_path, cross_device=(0, 0)).check(torch.ones(3, device="cuda") + 1e-4, "k", {})


@pytest.mark.slow
def test_golden_bytes_are_deterministic_across_processes(tmp_path):
    import subprocess
    import sys

    script = ("import torch, sys; from reprohub.golden.engine import save_golden; "
              "save_golden(sys.argv[1], {'b': torch.arange(3), 'a': torch.ones(2, dtype=torch.bfloat16), 'n': 1.5}, "
              "{'entrypoint': 'e', 'commit': 'c', 'torch': 't', 'input': 'i', 'device': 'cpu'})")
    digests = set()
    for i in range(3):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / f"{i}.safetensors")], check=True)
        digests.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(digests) == 1


@pytest.mark.slow
def test_git_diff_with_the_textconv_shows_which_leaf_changed(tmp_path):
    """The README's two lines of setup make `git diff` of a golden readable (it shows `Bin` otherwise)."""
    import shutil
    import subprocess
    import sys

    from reprohub.golden.engine import save_golden

    repo = tmp_path / "project"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True, text=True).stdout
    git("init", "-q")
    git("config", "user.email", "t@example.org")
    git("config", "user.name", "t")
    golden = repo / "goldens" / "m.safetensors"
    golden.parent.mkdir()
    out = {"logits": torch.tensor([1.0, 2.0, 3.0]), "boxes": torch.zeros(2, 4)}
    save_golden(golden, out, {"commit": "a" * 40})
    git("add", ".")
    git("commit", "-qm", "golden")
    out["logits"] = torch.tensor([1.0, 2.0, 3.5])
    save_golden(golden, out, {"commit": "b" * 40})
    assert "Bin" in git("diff", "--stat")  # what a reviewer sees without the setup
    (repo / ".gitattributes").write_text("*.safetensors diff=reprohub-golden\n")
    reprohub_cmd = shutil.which("reprohub") or f"{sys.executable} -m reprohub"
    git("config", "diff.reprohub-golden.textconv", f"{reprohub_cmd} golden show --textconv")
    diff = git("diff", "goldens/m.safetensors")
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    assert any(line.startswith("-leaf out.logits: float32 [3] min 1 max 3 mean 2 ") for line in changed), diff
    assert any(line.startswith("+leaf out.logits: float32 [3] min 1 max 3.5 mean 2.16667 ") for line in changed)
    assert any("meta commit: " + "b" * 40 in line for line in changed)
    assert not any("out.boxes" in line for line in changed)  # the unchanged leaf is context, not a change


def test_golden_diff_reports_with_the_engine_and_exits_1(tmp_path, capsys):
    from reprohub.cli import main
    from reprohub.golden.engine import save_golden

    save_golden(tmp_path / "a.safetensors", torch.tensor([1.0, 2.0]), {})
    save_golden(tmp_path / "b.safetensors", torch.tensor([1.0, 2.5]), {})
    assert main(["golden", "diff", str(tmp_path / "a.safetensors"), str(tmp_path / "a.safetensors")]) == 0
    assert main(["golden", "diff", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 1
    assert "Greatest absolute difference: 0.5 at index (1,)" in capsys.readouterr().out
    (tmp_path / "bad.safetensors").write_bytes(b"not a golden")
    assert main(["golden", "show", str(tmp_path / "bad.safetensors")]) == 1  # not a golden: a script can tell
    assert "DAMAGED golden" in capsys.readouterr().out
    assert main(["golden", "show", "--textconv", str(tmp_path / "bad.safetensors")]) == 0  # git's diff still shows
    assert "DAMAGED golden" in capsys.readouterr().out


def test_deterministic_mode_costs_no_inductor_import():
    """torch.use_deterministic_algorithms imports torch._inductor (about 2 s a process); the fixture does not."""
    import subprocess
    import sys

    code = ("import sys, torch\nfrom reprohub.pytest_plugin import GoldenChecker\n"
            "with GoldenChecker(None, None).deterministic():\n"
            "    assert torch.are_deterministic_algorithms_enabled()\n"
            "    assert torch.is_deterministic_algorithms_warn_only_enabled()\n"
            "assert not torch.are_deterministic_algorithms_enabled()\n"
            "print('torch._inductor' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr


def test_the_fixture_seeds_as_torch_manual_seed_and_seeds_every_device_where_an_accelerator_can_start(monkeypatch):
    """Without an accelerator only the CPU generator is seeded (torch.manual_seed would queue seeds for
    backends that cannot start, about 1 ms a test); with one, torch.manual_seed seeds them all."""
    from reprohub.golden.checker import GoldenChecker

    torch.manual_seed(0)
    expected = torch.randn(4)
    torch.manual_seed(123)
    calls = []
    real = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda seed: (calls.append(seed), real(seed))[1])
    with GoldenChecker(None, None).deterministic():
        assert torch.equal(torch.randn(4), expected)
    assert calls == ([0] if torch.accelerator.is_available() else [])
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    with GoldenChecker(None, None).deterministic():
        assert torch.equal(torch.randn(4), expected)
    assert calls[-1] == 0


def test_a_passing_golden_check_makes_no_temporary_folder_and_hashes_a_pinned_file_once(tmp_path, monkeypatch):
    from reprohub.golden import store as store_module
    from reprohub.golden.checker import GoldenChecker
    from reprohub.golden.store import GoldenStore
    from reprohub.lock.lockfile import Lockfile
    from reprohub.lock.session import LockSession

    session = LockSession(Lockfile(), str(tmp_path / "hub.lock"), update=True)
    GoldenStore(tmp_path / "g", tmp_path, session, update=True).check(torch.ones(3), "k", {})
    locked = LockSession(session.result(), str(tmp_path / "hub.lock"))
    made, hashed = [], []
    real_hash = store_module.sha256_file
    monkeypatch.setattr(store_module, "sha256_file", lambda p: (hashed.append(p), real_hash(p))[1])

    class Hub:
        last_load = last_repo = None
        last_nested = ()

    def folder():
        made.append(True)
        return tmp_path / "obtained"

    for _ in range(3):  # three tests checking the same pinned golden
        checker = GoldenChecker(GoldenStore(tmp_path / "g", tmp_path, locked), Hub(), folder, "t.py::test_k")
        assert checker.check(torch.ones(3), key="k") == "matched"
    assert made == [] and len(hashed) == 1
    with pytest.raises(pytest.fail.Exception, match="obtained values were written"):
        GoldenChecker(GoldenStore(tmp_path / "g", tmp_path, locked), Hub(), folder, "t.py::test_k").check(
            torch.zeros(3), key="k")
    assert made == [True]
