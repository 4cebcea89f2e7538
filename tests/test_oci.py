"""Bundles in a real OCI registry (issue 39, part 1 in part): Debian's ``docker-registry`` (the reference
implementation of the distribution spec) on 127.0.0.1 with a temporary storage folder."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import pytest
import requests
import torch

from reprohub.cli import EXIT_OK, main
from reprohub.errors import AuthError, MirrorError
from reprohub.lock.lockfile import Lockfile
from reprohub.lock.mirror import artifact_item
from reprohub.lock.oci import parse_reference

from .test_mirror import cold_hub, load_output, locked  # noqa: F401 -- locked: the fixture, used by name

REGISTRY = shutil.which("docker-registry") or shutil.which("registry")


def _serve_registry(tmp_path, auth: str = ""):
    """``docker-registry serve`` on a free 127.0.0.1 port, storing in a temporary folder (``auth``: its YAML
    ``auth:`` section); yields its ``oci://`` base."""
    if REGISTRY is None:
        pytest.skip("no docker-registry here (Debian: apt-get install docker-registry; .ci/run installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "
                      f"{tmp_path / 'registry-data'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n"
                      + auth)
    process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code in (200, 401):
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail(f"docker-registry did not start: {process.stderr.read().decode()[-500:]}")
            time.sleep(0.05)
        yield f"oci://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def registry(tmp_path):
    yield from _serve_registry(tmp_path)


@pytest.fixture
def private_registry(tmp_path):
    """The registry behind a password (its htpasswd auth: bcrypt, as ``htpasswd -B`` writes it)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

        hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH))
    (tmp_path / "htpasswd").write_text(f"ci:{hashed}\n")
    yield from _serve_registry(tmp_path, f"auth:\n  htpasswd:\n    realm: test\n    path: {tmp_path / 'htpasswd'}\n")


def test_a_private_registry_works_with_credentials_from_the_environment_and_says_what_to_set_without(
        locked, private_registry, tmp_path, monkeypatch, capsys):  # noqa: F811
    target = f"{private_registry}/team/private:v1"
    assert main(["bundle", "--lock", str(locked["lock"]), target]) == 3
    err = capsys.readouterr().err
    assert "access to the OCI registry" in err and "REPROHUB_OCI_USERNAME" in err
    monkeypatch.setenv("REPROHUB_OCI_USERNAME", "ci")
    monkeypatch.setenv("REPROHUB_OCI_PASSWORD", "s3cret")
    assert main(["bundle", "--lock", str(locked["lock"]), target]) == EXIT_OK
    out = capsys.readouterr()
    assert "s3cret" not in out.out + out.err
    hub = cold_hub(tmp_path, "fresh", target, locked, origin=False)
    assert torch.equal(load_output(hub), locked["expected"])
    monkeypatch.setenv("REPROHUB_OCI_PASSWORD", "wrong")
    with pytest.raises(AuthError, match="refused the credentials|asked for"):
        cold_hub(tmp_path, "again", target, locked, origin=False).fetch_artifact(
            next(iter(Lockfile.read(locked["lock"]).artifacts)), progress=False)


def test_a_pushed_lock_serves_a_cold_load_with_the_origin_gone_and_a_second_push_uploads_nothing(
        locked, registry, server, tmp_path, capsys):  # noqa: F811
    target = f"{registry}/team/hub-bundle:v1"
    assert main(["bundle", "--lock", str(locked["lock"]), target, "--json"]) == EXIT_OK
    first = json.loads(capsys.readouterr().out)
    lock = Lockfile.read(locked["lock"])
    (art,) = lock.artifacts.values()
    assert artifact_item(art.sha256) in first["uploaded"] and "reprohub-bundle.json" in first["uploaded"]
    assert len(first["uploaded"]) == 3 and first["present"] == []  # the repo zip, the weights, the index
    assert main(["bundle", "--lock", str(locked["lock"]), target, "--json"]) == EXIT_OK
    again = json.loads(capsys.readouterr().out)
    assert again["uploaded"] == [] and sorted(again["present"]) == sorted(first["uploaded"])

    # the registry holds the weights under the very digest the lock pins
    ref = parse_reference(target)
    assert requests.head(ref.url("blobs", f"sha256:{art.sha256}"), timeout=5).status_code == 200
    manifest = requests.get(ref.url("manifests", "v1"), timeout=5,
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
    assert manifest["artifactType"] == "application/vnd.reprohub.bundle.v1+json"

    server.stop()  # the origin is gone
    hub = cold_hub(tmp_path, "fresh", target, locked)
    assert torch.equal(load_output(hub), locked["expected"])
    code = main(["mirror", "check", target, "--lock", str(locked["lock"]), "--json"])
    assert code == EXIT_OK and json.loads(capsys.readouterr().out)["complete"]


def test_a_blob_whose_bytes_differ_from_the_pin_is_refused(locked, registry, tmp_path, capsys):  # noqa: F811
    lock = Lockfile.read(locked["lock"])
    (art,) = lock.artifacts.values()
    blob = locked["bundle"] / artifact_item(art.sha256)
    blob.write_bytes(b"not the weights")  # a bundle folder tampered with before it was pushed
    from reprohub.fetch.download import Downloader
    from reprohub.lock.oci import push_bundle

    target = parse_reference(f"{registry}/team/tampered:v1")
    push_bundle(locked["bundle"], target, Downloader())  # the registry stores it under the bytes' own digest
    hub = cold_hub(tmp_path, "fresh", f"{registry}/team/tampered:v1", locked)
    with pytest.raises(MirrorError, match="from the mirror oci://"):
        hub.fetch_artifact(art.url, progress=False)


class BearerFront:
    """A token service and a front that takes only its tokens, before the real registry: the flow of GHCR, Docker
    Hub and Harbor (401 ``WWW-Authenticate: Bearer realm=...,service=...,scope=...``, then a token for the scope)."""

    def __init__(self, registry: str) -> None:
        import base64
        import threading
        from http.server import BaseHTTPRequestHandler

        from reprohub.testing.server import QuietHTTPServer

        front, upstream = self, registry.replace("oci://", "http://")
        self.token_requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _answer(self, status: int, headers: dict, body: bytes = b"") -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.startswith("/token"):
                    front.token_requests.append(self.path)
                    good = "Basic " + base64.b64encode(b"ci:s3cret").decode()
                    if self.headers.get("Authorization") != good:
                        return self._answer(401, {})
                    return self._answer(200, {"Content-Type": "application/json"}, b'{"token": "tok-123"}')
                if self.headers.get("Authorization") != "Bearer tok-123":
                    challenge = (f'Bearer realm="{front.url}/token",service="test-registry",'
                                 f'scope="repository:team/behind:pull,push"')
                    return self._answer(401, {"WWW-Authenticate": challenge})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
                answer = requests.request(self.command, upstream + self.path, headers=headers, data=body,
                                          allow_redirects=False, timeout=30)
                relayed = {k: v.replace(upstream, front.url) for k, v in answer.headers.items()
                           if k.lower() not in ("content-length", "transfer-encoding", "connection")}
                return self._answer(answer.status_code, relayed, answer.content)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _any

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_registry_behind_the_bearer_token_flow_takes_a_token_for_the_credentials(
        locked, registry, tmp_path, monkeypatch, capsys):  # noqa: F811
    front = BearerFront(registry)
    try:
        target = f"oci://{front.url.removeprefix('http://')}/team/behind:v1"
        assert main(["bundle", "--lock", str(locked["lock"]), target]) == 3
        assert "its token service" in capsys.readouterr().err and len(front.token_requests) == 1
        monkeypatch.setenv("REPROHUB_OCI_USERNAME", "ci")
        monkeypatch.setenv("REPROHUB_OCI_PASSWORD", "s3cret")
        assert main(["bundle", "--lock", str(locked["lock"]), target]) == EXIT_OK
        from urllib.parse import parse_qs, urlsplit

        asked = parse_qs(urlsplit(front.token_requests[-1]).query)  # the scope the challenge named, as it named it
        assert asked == {"service": ["test-registry"], "scope": ["repository:team/behind:pull,push"]}
        hub = cold_hub(tmp_path, "fresh", target, locked, origin=False)
        assert torch.equal(load_output(hub), locked["expected"])
    finally:
        front.stop()


@pytest.mark.slow
def test_a_locked_test_passes_from_a_fresh_cache_with_the_registry_as_mirror_and_the_origin_stopped(
        pytester, server, tiny_repo, weights_url, registry, monkeypatch, tmp_path):
    """The issue's run: record, push, stop the origin, then `pytest --hub-lock` on a fresh machine reads the
    registry, by tag and by the manifest's digest."""
    from .conftest import run_locked
    from .test_plugin import TEST_TINY

    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_tiny=TEST_TINY)
    monkeypatch.chdir(pytester.path)
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    target = f"{registry}/team/ci-bundle:main"
    assert main(["bundle", "--lock", "hub.lock", target]) == EXIT_OK
    ref = parse_reference(target)
    answer = requests.head(ref.url("manifests", "main"), timeout=5,
                           headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    by_digest = f"{registry}/team/ci-bundle@{answer.headers['Docker-Content-Digest']}"
    server.stop()
    for mirror, home in ((target, "node-a"), (by_digest, "node-b")):
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / home))
        monkeypatch.setenv("REPROHUB_MIRROR", mirror)
        run_locked(pytester).assert_outcomes(passed=1)


def test_docker_s_config_json_logs_in_where_the_environment_names_no_credentials(
        locked, private_registry, tmp_path, monkeypatch):  # noqa: F811
    import base64

    host = private_registry.removeprefix("oci://")
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "config.json").write_text(json.dumps(
        {"auths": {host: {"auth": base64.b64encode(b"ci:s3cret").decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    assert main(["bundle", "--lock", str(locked["lock"]), f"{private_registry}/team/from-docker:v1"]) == EXIT_OK


def test_oras_pulls_a_pushed_bundle_back_as_the_bundle_folder(locked, registry, tmp_path):  # noqa: F811
    """ORAS's conventions: an oras client lists the layers by title and pulls the same files, byte for byte."""
    import oras.client as oras_client  # in the test extras
    target = f"{registry}/team/for-oras:v1"
    assert main(["bundle", "--lock", str(locked["lock"]), target]) == EXIT_OK
    client = oras_client.OrasClient(hostname=registry.removeprefix("oci://"), insecure=True)
    pulled = client.pull(target=target.removeprefix("oci://"), outdir=str(tmp_path / "pulled"))
    files = sorted(p.relative_to(tmp_path / "pulled").as_posix() for p in (tmp_path / "pulled").rglob("*")
                   if p.is_file())
    written = sorted(p.relative_to(locked["bundle"]).as_posix() for p in locked["bundle"].rglob("*") if p.is_file())
    assert files == written and len(pulled) == len(written)
    assert all((tmp_path / "pulled" / f).read_bytes() == (locked["bundle"] / f).read_bytes() for f in files)
