"""``reprohub demo``: the whole main job on a built-in example, end to end, on 127.0.0.1.

1. build a real Git repo (``demo/tiny``, tag ``v1``) from the bundled hubconf;
2. serve it, and its weights, from a GitHub-compatible host on 127.0.0.1;
3. ``pytest --hub-lock hub.lock --hub-update`` records commits, weight digests and goldens;
4. show the lock;
5. ``pytest --hub-lock hub.lock --hub-offline`` proves the same outputs with no network at all;
6. ``reprohub bundle`` writes everything pinned into a folder, the host is stopped, and a fresh cache
   with ``REPROHUB_MIRROR`` pointing at the bundle passes the same tests: the origin can disappear.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..gitrepo import GitRepo
from ..server import HubServer

HERE = Path(__file__).parent


def demo_weights() -> bytes:
    """Deterministic weights for the demo TinyMLP(hidden=8)."""
    import torch

    gen = torch.Generator().manual_seed(2024)
    state = {"fc1.weight": torch.randn(8, 3, generator=gen), "fc1.bias": torch.randn(8, generator=gen),
             "fc2.weight": torch.randn(2, 8, generator=gen), "fc2.bias": torch.randn(2, generator=gen)}
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def run_demo(workdir: str | None = None) -> int:
    """Run the demo; returns 0 when every step passed.  Without ``workdir`` it works in a temporary folder and
    removes it at the end; with one, the project, cache and bundle stay there to look at and run again."""
    if workdir:
        return _run_demo(Path(workdir), kept=True)
    root = Path(tempfile.mkdtemp(prefix="reprohub-demo-"))
    try:
        return _run_demo(root, kept=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_demo(root: Path, kept: bool) -> int:
    project = root / "project"
    shutil.rmtree(project, ignore_errors=True)
    shutil.copytree(HERE / "project", project, ignore=shutil.ignore_patterns("__pycache__"))
    repo = GitRepo.init(root / "repo-src")
    repo.copy_tree(HERE / "repo", "tiny demo model v1")
    repo.tag("v1")
    with HubServer() as server:
        server.add_repo("demo/tiny", repo.path)
        server.add_file("tiny_mlp-v1.pt", demo_weights())
        env = {**os.environ, "REPROHUB_GITHUB_API_URL": server.api_url, "REPROHUB_DEMO_FILES": f"{server.url}/files",
               "TORCH_HOME": str(root / "torch-home"), "REPROHUB_TRUST": "demo/*"}
        _say(f"serving demo/tiny (tag v1 = {repo.head()[:12]}) and its weights on {server.url}")
        first = _pytest(project, env, "--hub-update")
        _say(f"{project / 'hub.lock'}:")
        print((project / "hub.lock").read_text())
        before = len(server.requests)
        second = _pytest(project, env, "--hub-offline")
        _say(f"offline run made {len(server.requests) - before} HTTP requests")
        bundled = _run(project, env, "reprohub", "bundle", "--lock", "hub.lock", str(root / "bundle"))
    _say("the host is stopped; a fresh cache reads everything from the bundle, verified against the lock")
    env.update(TORCH_HOME=str(root / "fresh-torch-home"), REPROHUB_MIRROR=str(root / "bundle"))
    third = _pytest(project, env)
    if kept:
        _say(f"project kept in {project}, bundle in {root / 'bundle'}; the last step runs again, with no host, as:\n"
             f"   {_command_line(project, env, 'pytest', '-q', '-p', 'no:cacheprovider', '--hub-lock', 'hub.lock')}")
    else:
        _say(f"done; {root} is removed (`reprohub demo --workdir DIR` keeps the project, cache and bundle)")
    return 0 if first == second == bundled == third == 0 else 1


def _pytest(project: Path, env: dict, *extra: str) -> int:
    return _run(project, env, "pytest", "-q", "-p", "no:cacheprovider", "--hub-lock", "hub.lock", *extra)


def _run(project: Path, env: dict, module: str, *args: str) -> int:
    """Run ``python -m module args`` in the project, showing it as a command a user can copy: the folder
    and every environment variable the demo set (the API URL, trust, the mirror) included."""
    _say("$ " + _command_line(project, env, module, *args))
    return subprocess.run([sys.executable, "-m", module, *args], cwd=project, env=env).returncode


def _command_line(project: Path, env: dict, module: str, *args: str) -> str:
    import shlex

    settings = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if os.environ.get(k) != v]
    return " ".join([f"cd {shlex.quote(str(project))} &&", *settings, module, *map(shlex.quote, args)])


def _say(text: str) -> None:
    print(f"\n== {text}", flush=True)
