"""Shared fixtures: a real HTTP host on 127.0.0.1, Git repos built with git, a Hub."""

import torch  # noqa: F401  -- imported first, once: in-process pytester runs must not import it again
# (An in-process pytester run forgets the modules it imported; importing torch._inductor a second
# time would register its operator library twice. The golden fixture therefore never imports it.)

# torch picks its CPU kernels (ATEN_CPU_CAPABILITY) once, at the first use: fixed now, so that a test that sets
# the variable for its subprocesses cannot make this process's later goldens AVX2 ones
torch.backends.cpu.get_cpu_capability()

import contextlib
import threading
from pathlib import Path

import pytest

from reprohub import Hub
from reprohub.fetch.download import DownloadPolicy
from reprohub.testing.gitrepo import GitRepo
from reprohub.testing.server import HubServer, QuietHTTPServer

FAST_POLICY = DownloadPolicy(connect_timeout=5, read_timeout=10, retries=3, backoff=0.01, max_backoff=0.05)

TINY_REPO = Path(__file__).parent.parent / "fixtures" / "repos" / "tiny"


def tiny_repo_files(version: str, scale: float = 1.0) -> dict:
    """The files of fixtures/repos/tiny at one version: VERSION and the output SCALE vary."""
    model = (TINY_REPO / "tinynet" / "model.py").read_text()
    return {
        "hubconf.py": (TINY_REPO / "hubconf.py").read_text(),
        "tinynet/__init__.py": f"VERSION = {version!r}\n",
        "tinynet/model.py": model.replace("SCALE = 1.0", f"SCALE = {scale!r}"),
    }


def serve_repo(server, tmp_path, full_name: str, files: dict) -> GitRepo:
    """Commit ``files`` to a new Git repo and serve it as ``full_name`` ("owner/repo" or just "repo" for acme/)."""
    full_name = full_name if "/" in full_name else f"acme/{full_name}"
    repo = GitRepo.init(tmp_path / "served" / full_name)
    repo.commit(files, f"{full_name} fixture")
    server.add_repo(full_name, repo.path)
    return repo


@pytest.fixture
def boot():
    """Which boot the machine is in; assign ``boot.id`` to simulate a reboot."""
    from reprohub.fetch import durability

    class Boot:
        id = "boot-a"

    durability.set_boot_id_source(lambda: Boot.id)
    yield Boot
    durability.set_boot_id_source(None)


@pytest.fixture
def server():
    """A HubServer on 127.0.0.1, stopped after the test."""
    with HubServer() as srv:
        yield srv


@pytest.fixture
def tiny_repo(tmp_path, server):
    """A real Git repo 'acme/tiny' with main at v2, tag v1 and branch 'stable', served by ``server``."""
    repo = GitRepo.init(tmp_path / "src" / "tiny")
    v1 = repo.commit(tiny_repo_files("v1"), "v1")
    repo.tag("v1")
    repo.branch("stable")
    v2 = repo.commit(tiny_repo_files("v2", scale=2.0), "v2")
    server.add_repo("acme/tiny", repo.path)
    repo.v1, repo.v2 = v1, v2
    return repo


@pytest.fixture
def weights_url(server, monkeypatch):
    """Serve a state dict for TinyMLP(hidden=4) and point the tiny hubconf at it."""
    import io

    torch.manual_seed(1)
    state = {"fc1.weight": torch.randn(4, 3), "fc1.bias": torch.randn(4),
             "fc2.weight": torch.randn(2, 4), "fc2.bias": torch.randn(2)}
    buf = io.BytesIO()
    torch.save(state, buf)
    url = server.add_file("tiny-weights.pt", buf.getvalue())
    monkeypatch.setenv("TINY_WEIGHTS_URL", url)
    return url


@pytest.fixture
def hub(tmp_path, server):
    """A Hub with its own cache, pointed at ``server``, trusting everything."""
    return Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url, policy=FAST_POLICY)


@pytest.fixture(autouse=True)
def _trust_all(monkeypatch):
    monkeypatch.setenv("REPROHUB_TRUST", "all")


@pytest.fixture
def read_only_folder(tmp_path):
    """Make a folder holding ``files`` ({relative path: bytes}, or a folder copied with its modes, times and
    links) that really cannot be written.

    As a normal user, permissions do it; as root (CI here), permissions do not stop writes, so the
    folder is a tmpfs remounted read-only (EROFS), as a shared cache on a read-only volume would be.
    """
    import os
    import subprocess

    mounted = []

    def make(files: dict) -> Path:
        folder = tmp_path / f"read-only-{len(mounted)}"
        folder.mkdir()
        as_root = os.geteuid() == 0
        if as_root:
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=True)
            mounted.append(folder)
        if isinstance(files, Path):
            import shutil

            shutil.copytree(files, folder, symlinks=True, dirs_exist_ok=True)
            files = {}
        for rel, data in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(data)
        if as_root:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            for path in sorted(folder.rglob("*"), reverse=True):
                if not path.is_symlink():
                    path.chmod(0o555 if path.is_dir() else 0o444)
            folder.chmod(0o555)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=False)


def run_locked(project, *args):
    """``pytest --hub-lock hub.lock ARGS`` in a generated project.

    In this process (``runpytest_inprocess``: no interpreter start and no second torch import, about
    3 s a run on 2 cores; with ``-n`` only xdist's workers are new processes), unless
    ``REPROHUB_TEST_SUBPROCESS=1`` asks for a fresh interpreter each time; the end-to-end tests that
    must prove a fresh process (``test_cli``'s demo, concurrent runs, SIGKILL) start theirs explicitly.
    """
    import os

    full = ("-p", "no:cacheprovider", "--hub-lock", "hub.lock", *args)
    if os.environ.get("REPROHUB_TEST_SUBPROCESS") == "1":
        return project.runpytest_subprocess(*full)
    return project.runpytest_inprocess(*full)


@contextlib.contextmanager
def serving(answer, path: str = "/release.json"):
    """A one-route HTTP host on 127.0.0.1 for a host's habit HubServer lacks (gzip, ETags): ``answer(headers)``
    gives each GET's ``(status, headers, body)``; yields ``path``'s URL."""
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = answer(self.headers)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}{path}"
    finally:
        httpd.shutdown()
        httpd.server_close()
