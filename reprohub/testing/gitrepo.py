"""Build real Git repositories from Python (for fixtures, the demo and benchmarks).

Example:
    >>> repo = GitRepo.init(tmp + "/demo-repo")
    >>> sha = repo.commit({"hubconf.py": "def f():\\n    return 1\\n"}, "first")
    >>> repo.tag("v1")
    >>> repo.head() == sha
    True
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Mapping

_ENV = {
    "GIT_AUTHOR_NAME": "reprohub", "GIT_AUTHOR_EMAIL": "reprohub@localhost",
    "GIT_COMMITTER_NAME": "reprohub", "GIT_COMMITTER_EMAIL": "reprohub@localhost",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}


class GitRepo:
    """A working Git repository on disk."""

    def __init__(self, path: "str | os.PathLike[str]") -> None:
        self.path = Path(path)

    @classmethod
    def init(cls, path: "str | os.PathLike[str]", branch: str = "main") -> "GitRepo":
        """Create an empty repository whose first branch is ``branch``."""
        Path(path).mkdir(parents=True, exist_ok=True)
        repo = cls(path)
        repo.git("init", "--quiet", f"--initial-branch={branch}")
        return repo

    def git(self, *args: str) -> str:
        """Run ``git`` in the repository and return its stdout."""
        proc = subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True, text=True,
                              env={**os.environ, **_ENV})
        return proc.stdout.strip()

    def commit(self, files: Mapping[str, "str | bytes | None"], message: str) -> str:
        """Write (or, for ``None``, delete) files, commit them all, return the commit sha."""
        for rel, content in files.items():
            target = self.path / rel
            if content is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content if isinstance(content, bytes) else content.encode())
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.head()

    def copy_tree(self, source: "str | os.PathLike[str]", message: str) -> str:
        """Replace the work tree by the files under ``source`` and commit."""
        files: dict[str, str | bytes | None] = {
            str(p.relative_to(self.path)): None for p in self.path.rglob("*") if p.is_file() and ".git" not in p.parts
        }
        for p in Path(source).rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                files[str(p.relative_to(source))] = p.read_bytes()
        return self.commit(files, message)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def tag(self, name: str, ref: str = "HEAD") -> None:
        self.git("tag", "--force", name, ref)

    def branch(self, name: str, ref: str = "HEAD") -> None:
        self.git("branch", "--force", name, ref)

    def checkout(self, name: str) -> None:
        self.git("checkout", "--quiet", name)

    def reset_hard(self, ref: str) -> None:
        """Move the current branch to ``ref`` (a force-push, seen from the host)."""
        self.git("reset", "--quiet", "--hard", ref)

    def delete_ref(self, name: str) -> None:
        self.git("update-ref", "-d", name)


# -- reading a repository as a GitHub-compatible host answers (reprohub.testing.server) ----------------


def git_output(git_dir: Path, *args: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(git_dir), *args], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ref_page(git_dir: Path, kind: str, query: str) -> list[dict]:
    """One page of ``GET .../branches`` or ``.../tags``, as GitHub pages them."""
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    per_page, page = int(params.get("per_page", 30)), int(params.get("page", 1))
    prefix = "refs/heads" if kind == "branches" else "refs/tags"
    listing = git_output(git_dir, "for-each-ref", prefix, "--format=%(refname:short) %(objectname) %(*objectname)") or ""
    refs = [line.split() for line in listing.splitlines() if line.strip()]
    items = [{"name": parts[0], "commit": {"sha": parts[-1]}} for parts in refs]
    return items[(page - 1) * per_page: page * per_page]


def compare_refs(git_dir: Path, base: str, head: str) -> str:
    base_sha, head_sha = rev_parse(git_dir, base), rev_parse(git_dir, head)
    if base_sha is None or head_sha is None:
        return "unknown"
    if base_sha == head_sha:
        return "identical"
    reachable = subprocess.run(["git", "-C", str(git_dir), "merge-base", "--is-ancestor", head_sha, base_sha]).returncode
    return "behind" if reachable == 0 else "diverged"


def rev_parse(git_dir: Path, ref: str) -> str | None:
    if ref.startswith("-"):
        return None
    for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        sha = git_output(git_dir, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
        if sha:
            return sha
    return None
