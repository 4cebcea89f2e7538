"""The reprohub command: lock, fetch, verify, cache, list, help, exit codes."""

import hashlib
import os

import pytest

from reprohub.cli import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, main
from reprohub.lock.lockfile import ArtifactPin, Lockfile


@pytest.fixture
def cli_env(monkeypatch, server, tiny_repo, weights_url, tmp_path):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_lock_fetch_verify_offline_cycle(cli_env, tiny_repo, weights_url, server, capsys, monkeypatch, tmp_path):
    assert main(["lock", "acme/tiny:v1", "acme/tiny:stable"]) == EXIT_OK
    lock = Lockfile.read("hub.lock")
    assert lock.repos["acme/tiny:v1"].commit == lock.repos["acme/tiny:stable"].commit == tiny_repo.v1
    assert f"acme/tiny:v1 -> {tiny_repo.v1}" in capsys.readouterr().out
    tiny_repo.checkout("stable")
    moved = tiny_repo.commit({"tinynet/__init__.py": "VERSION = 'v1.1'\n"}, "stable moves")
    assert main(["lock", "acme/tiny:stable"]) == EXIT_OK  # re-locking pins where the ref points now
    assert Lockfile.read("hub.lock").repos["acme/tiny:stable"].commit == moved
    tiny_repo.reset_hard(tiny_repo.v1)
    assert main(["lock", "acme/tiny:stable"]) == EXIT_OK
    capsys.readouterr()
    body = server.state.files["tiny-weights.pt"]
    lock.artifacts[weights_url] = ArtifactPin(weights_url, hashlib.sha256(body).hexdigest(), len(body))
    lock.write("hub.lock")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-cache"))
    assert main(["verify"]) == EXIT_MISMATCH
    assert "MISSING repo acme/tiny:v1" in capsys.readouterr().out
    assert main(["fetch"]) == EXIT_OK
    server.stop()
    monkeypatch.setenv("REPROHUB_OFFLINE", "1")
    assert main(["verify"]) == EXIT_OK
    assert "checked 2 repos, 1 artifact, 0 goldens of hub.lock against the cache" in capsys.readouterr().out
    assert main(["fetch"]) == EXIT_OK  # everything is cached: offline fetch succeeds


def test_verify_detects_an_edited_cached_file(cli_env, tiny_repo, capsys):
    main(["lock", "acme/tiny:v1"])
    from reprohub import Hub

    folder = Hub().resolve("acme/tiny:v1").path
    (folder / "hubconf.py").write_text("# edited\n")
    assert main(["verify"]) == EXIT_MISMATCH
    assert "MISMATCH repo acme/tiny:v1" in capsys.readouterr().out


def test_cache_ls_rm_prune(cli_env, tiny_repo, weights_url, capsys):
    from reprohub import Hub

    hub = Hub()
    hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True)
    hub.load("acme/tiny:main", "version")
    (hub.layout.checkpoints / ".x.incomplete").write_bytes(b"partial")
    assert main(["cache", "ls"]) == EXIT_OK
    listing = capsys.readouterr().out
    assert f"acme/tiny @ {tiny_repo.v1}" in listing and weights_url in listing
    main(["lock", "acme/tiny:v1"])
    assert main(["cache", "prune", "--lock", "hub.lock"]) == EXIT_OK
    pruned = capsys.readouterr().out
    assert ".x.incomplete" in pruned and tiny_repo.v2 in pruned
    assert not hub.layout.artifact_path(weights_url).exists()
    assert main(["cache", "rm", "acme/tiny"]) == EXIT_OK
    assert main(["cache", "rm", "acme/tiny"]) == EXIT_MISMATCH


def test_list_help_and_errors_exit_codes(cli_env, capsys):
    assert main(["list", "acme/tiny:v1"]) == EXIT_OK
    assert capsys.readouterr().out.split() == ["tiny_mlp", "version"]
    assert main(["help", "acme/tiny:v1", "version"]) == EXIT_OK
    assert "Which version" in capsys.readouterr().out
    assert main(["list", "acme/tiny:c:d"]) == 2  # a spec that can never work is a usage error, as the README says
    assert "error: expected" in capsys.readouterr().err
    assert main(["list", "nobody/missing"]) == EXIT_ERROR  # a well-formed spec the host does not know
    with pytest.raises(SystemExit) as info:
        main(["lock"])
    assert info.value.code == 2


def test_serve_is_a_github_compatible_host(tiny_repo, tmp_path, monkeypatch):
    import subprocess
    import sys

    from reprohub import Hub

    proc = subprocess.Popen([sys.executable, "-m", "reprohub.cli", "serve", "--port", "0", "--repo",
                             f"me/tiny={tiny_repo.path}"], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("serving on http://127.0.0.1:")
        api = proc.stdout.readline().split("=", 1)[1].strip()
        hub = Hub(hub_dir=tmp_path / "h", github_api_url=api)
        assert hub.load("me/tiny:v1", "version", trust_repo=True) == "v1"
        assert hub.last_repo.commit == tiny_repo.v1
        # the README's example, as written there, in a shell without a terminal
        import re
        from pathlib import Path

        readme = (Path(__file__).parent.parent / "README.md").read_text()
        example = re.search(r"`(REPROHUB_GITHUB_API_URL=http://127\.0\.0\.1:8000/api [^`]+)`", readme).group(1)
        example = example.replace("http://127.0.0.1:8000/api", api).replace('"me/model"', '"me/tiny"')
        example = example.replace("me/model", "me/tiny")
        env = {k: v for k, v in os.environ.items() if k != "REPROHUB_TRUST"}
        shown = subprocess.run(["bash", "-c", example.replace("python ", f"{sys.executable} ", 1)], env=env,
                               stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        assert shown.returncode == 0 and "tiny_mlp" in shown.stdout, shown.stderr
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_demo_runs_the_main_job_end_to_end_including_the_bundle(tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "offline run made 0 HTTP requests" in out
    assert (tmp_path / "bundle" / "reprohub-bundle.json").is_file()
    assert list((tmp_path / "fresh-torch-home" / "hub" / "reprohub" / "repos").rglob("hubconf.py"))  # from the bundle
    assert "REPROHUB_GITHUB_API_URL=http://127.0.0.1:" in out and "REPROHUB_TRUST='demo/*'" in out  # copyable
    last = out.rsplit("the last step runs again, with no host, as:", 1)[1].strip().splitlines()[0]
    assert "REPROHUB_MIRROR=" in last
    import subprocess
    import sys

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("REPROHUB_")},
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    again = subprocess.run(["bash", "-c", last], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "passed" in again.stdout, again.stdout + again.stderr


def test_a_trust_error_names_the_command_s_own_switch(cli_env, monkeypatch, capsys):
    monkeypatch.delenv("REPROHUB_TRUST")
    assert main(["list", "acme/tiny:v1"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "Fix: add --trust to this command" in err and "trust_repo=" not in err
    assert main(["list", "acme/tiny:v1", "--trust"]) == EXIT_OK


def test_a_hubconf_that_fails_to_import_is_one_paragraph_and_exit_3(cli_env, server, tmp_path, capsys):
    from .conftest import serve_repo

    serve_repo(server, tmp_path, "acme/needs", {"hubconf.py": "import timm_not_installed_here\n\ndef m():\n    pass\n"})
    assert main(["list", "acme/needs:main"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "'timm_not_installed_here'" in err and "pip install timm_not_installed_here" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["-v", "list", "acme/needs:main"]) == EXIT_ERROR
    assert "Traceback" in capsys.readouterr().err


def test_help_of_a_command_and_json_outputs_and_global_options(cli_env, tmp_path, capsys):
    import json

    assert main(["help", "lock"]) == EXIT_OK
    assert "usage: reprohub lock" in capsys.readouterr().out
    assert main(["help", "nonsense"]) == 2
    capsys.readouterr()
    assert main(["list", "acme/tiny:v1", "--json", "--hub-dir", str(tmp_path / "h")]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == ["tiny_mlp", "version"]
    assert main(["--hub-dir", str(tmp_path / "h"), "cache", "ls", "--json"]) == EXIT_OK  # before the command too
    listed = json.loads(capsys.readouterr().out)
    assert listed["hub_dir"] == str(tmp_path / "h") and [r["repo"] for r in listed["repos"]] == ["acme/tiny"]
    assert main(["cache", "ls", "--hub-dir", str(tmp_path / "h")]) == EXIT_OK
    assert f"hub dir {tmp_path / 'h'}: 1 repo, 0 artifacts" in capsys.readouterr().out
    assert main(["lock", "acme/tiny:v1"]) == EXIT_OK
    capsys.readouterr()
    assert main(["verify", "--json", "--hub-dir", str(tmp_path / "h")]) == EXIT_OK
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["checked"] == {"repos": 1, "artifacts": 0, "goldens": 0}
    assert main(["list", "acme/tiny:main", "--offline", "--hub-dir", str(tmp_path / "empty")]) == EXIT_ERROR
    assert "offline" in capsys.readouterr().err


def test_bench_passes_entrypoint_arguments(cli_env, capsys):
    assert main(["bench", "acme/tiny:v1", "tiny_mlp", "--repeat", "1", "--arg", "hidden=3", "--arg", "pretrained=False"]) == 0
    out = capsys.readouterr().out
    assert "cold load of acme/tiny:v1 tiny_mlp" in out and "HTTP requests" in out
    assert main(["bench", "acme/tiny:v1", "tiny_mlp", "--arg", "no equals sign"]) == 2
