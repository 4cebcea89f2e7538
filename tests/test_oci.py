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
from reprohub.errors import MirrorError
from reprohub.lock.lockfile import Lockfile
from reprohub.lock.mirror import artifact_item
from reprohub.lock.oci import parse_reference

from .test_mirror import cold_hub, load_output, locked  # noqa: F401 -- locked: the fixture, used by name

REGISTRY = shutil.which("docker-registry") or shutil.which("registry")


@pytest.fixture
def registry(tmp_path):
    """``docker-registry serve`` on a free 127.0.0.1 port, storing in a temporary folder; its ``oci://`` base."""
    if REGISTRY is None:
        pytest.skip("no docker-registry here (Debian: apt-get install docker-registry; .ci/run installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "registry.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: "
                      f"{tmp_path / 'registry-data'}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n")
    process = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
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
