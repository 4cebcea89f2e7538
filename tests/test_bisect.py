"""``reprohub bisect`` (issue 37, goal 5): the one pinned component whose swap from the good lock into the bad
one turns the tests from passing to failing."""

from __future__ import annotations

import io
import json

import pytest
import torch

from reprohub.cli import main
from reprohub.lock.bisect import Side, bisect, components
from reprohub.lock.lockfile import ArtifactPin, GoldenPin, Lockfile, RepoPin, RequestPin

from .test_plugin import TEST_TINY

W, V = "https://h/w.pt", "https://h/v.pt"


def _locks():
    good = Lockfile(repos={"acme/tiny:main": RepoPin("acme/tiny:main", "https://api", "1" * 40, "v2:" + "a" * 64)},
                    artifacts={W: ArtifactPin(W, "a" * 64, 3), V: ArtifactPin(V, "c" * 64, 3)},
                    requests={"GET https://h/in.json": RequestPin("GET https://h/in.json", 200, "e" * 64, 5)})
    bad = Lockfile(repos={"acme/tiny:main": RepoPin("acme/tiny:main", "https://api", "2" * 40, "v2:" + "b" * 64)},
                   artifacts={W: ArtifactPin(W, "b" * 64, 3), V: ArtifactPin(V, "c" * 64, 3)},
                   requests={"GET https://h/in.json": RequestPin("GET https://h/in.json", 200, "f" * 64, 5)},
                   goldens={"k": GoldenPin("k", "goldens/k.safetensors", "9" * 64)})
    return good, bad


def test_the_components_that_differ_come_weights_first_then_commits_then_request_bodies():
    good, bad = _locks()
    assert [(c.table, c.key) for c in components(good, bad)] == [
        ("artifacts", W), ("repos", "acme/tiny:main"), ("requests", "GET https://h/in.json")]  # V is the same


def test_the_first_swap_that_fails_is_named_and_every_run_keeps_the_bad_goldens():
    good, bad = _locks()
    seen = []

    def run(lock: Lockfile) -> bool:  # the commit breaks the tests; the weights change is harmless
        seen.append(lock)
        return lock.repos["acme/tiny:main"].commit == "1" * 40

    outcome = bisect(Side(good), Side(bad), run)
    assert outcome.exit_code == 0 and outcome.cause.table == "repos"
    assert outcome.verdict.startswith("cause: repo acme/tiny:main: commit 111111111111 -> 222222222222")
    assert [what for what, _ in outcome.runs] == [
        "the good side's pins", "the bad side's pins", f"swap 1/3, weights {W}: sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb",
        "swap 2/3, repo acme/tiny:main: commit 111111111111 -> 222222222222"]
    assert all(lock.goldens == bad.goldens for lock in seen)
    assert seen[2].artifacts[W].sha256 == "b" * 64 and seen[2].repos == good.repos  # one swap at a time


def test_no_single_swap_and_nothing_to_bisect_are_said_with_exit_1():
    good, bad = _locks()
    both = bisect(Side(good), Side(bad), lambda lock: not (lock.artifacts[W].sha256 == "b" * 64
                                                           and lock.repos["acme/tiny:main"].commit == "2" * 40))
    assert both.exit_code == 1 and both.cause is None and "no single swap" in both.verdict
    assert "weights https://h/w.pt" in both.verdict and "repo acme/tiny:main" in both.verdict
    always = bisect(Side(good), Side(bad), lambda lock: False)
    assert always.exit_code == 1 and "fail with the good side's pins too" in always.verdict
    assert len(always.runs) == 1
    same = bisect(Side(bad), Side(bad), lambda lock: True)
    assert same.exit_code == 1 and "pin the same" in same.verdict and not same.runs


def test_usage_errors_exit_2(tmp_path, capsys):
    (tmp_path / "hub.lock").write_text(Lockfile().dumps())
    assert main(["bisect", "--good", str(tmp_path / "hub.lock"), "--bad", str(tmp_path / "hub.lock")]) == 2
    assert "needs the tests to run after --" in capsys.readouterr().err
    assert main(["bisect", "--good", str(tmp_path / "nothing"), "--bad", str(tmp_path / "hub.lock"), "--", "x"]) == 2
    assert "a lock file or a bundle folder" in capsys.readouterr().err


@pytest.mark.slow
def test_bisect_names_the_weights_when_only_the_weights_differ(pytester, server, tiny_repo, weights_url,
                                                                monkeypatch, capsys):
    """Record a lock, bundle it, then the weights at the same URL change and a pull request re-pins them in
    hub.lock alone: the tests fail, and bisect (the bundle as the good side) names the weights."""
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_tiny=TEST_TINY)
    monkeypatch.chdir(pytester.path)
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "--hub-lock", "hub.lock", "--hub-update").assert_outcomes(
        passed=1)
    assert main(["bundle", "--lock", "hub.lock", "good-bundle"]) == 0

    state = torch.load(io.BytesIO(server.state.files["tiny-weights.pt"]), weights_only=True)
    state["fc2.bias"] += 0.5
    changed = io.BytesIO()
    torch.save(state, changed)
    server.add_file("tiny-weights.pt", changed.getvalue())
    lock = Lockfile.read("hub.lock")
    import hashlib
    lock.artifacts[weights_url] = ArtifactPin(weights_url, hashlib.sha256(changed.getvalue()).hexdigest(),
                                              len(changed.getvalue()))
    (pytester.path / "hub.lock").write_text(lock.dumps())
    capsys.readouterr()

    code = main(["bisect", "--good", "good-bundle", "--bad", "hub.lock", "--json", "--", "test_tiny.py"])
    found = json.loads(capsys.readouterr().out)
    assert code == 0, found
    assert found["cause"]["table"] == "artifacts" and found["cause"]["key"] == weights_url
    assert [run["passed"] for run in found["runs"]] == [True, False, False]
    assert not list(pytester.path.glob(".hub.lock.bisect-*"))  # the temporary locks are gone


TEST_INPUT = """
import requests
import torch

def test_reads_its_input(golden):
    values = requests.get("{url}", timeout=10).json()["values"]
    golden.check(torch.tensor(values), key="input/values")
"""


@pytest.mark.slow
def test_bisect_names_the_request_body_when_only_a_hub_responses_body_differs(pytester, server, monkeypatch, capsys):
    """A test downloads its input; a pull request swaps the pinned body (the lock's digest and the file in
    hub-responses/): bisect names that request."""
    import dataclasses
    import hashlib

    from reprohub.lock.beside import beside_name

    url = server.add_file("input.json", b'{"values": [1.0, 2.0, 3.0]}')
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_input=TEST_INPUT.format(url=url))
    monkeypatch.chdir(pytester.path)
    pytester.runpytest_inprocess("-p", "no:cacheprovider", "--hub-lock", "hub.lock", "--hub-update").assert_outcomes(
        passed=1)
    lock = Lockfile.read("hub.lock")
    (key,) = lock.requests
    (pytester.path / "good.lock").write_text(lock.dumps())
    body = b'{"values": [1.0, 2.0, 3.5]}'
    pin = dataclasses.replace(lock.requests[key], sha256=hashlib.sha256(body).hexdigest(), size=len(body))
    (pytester.path / "hub-responses" / beside_name(pin)).write_bytes(body)
    lock.requests[key] = pin
    (pytester.path / "hub.lock").write_text(lock.dumps())
    capsys.readouterr()

    code = main(["bisect", "--good", "good.lock", "--bad", "hub.lock", "--json", "--", "test_input.py",
                 "--hub-offline"])
    found = json.loads(capsys.readouterr().out)
    assert code == 0, found
    assert found["cause"]["table"] == "requests" and found["cause"]["key"] == key
    assert [run["passed"] for run in found["runs"]] == [True, False, False]
