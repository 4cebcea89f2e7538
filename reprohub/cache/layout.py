"""Where the hub dir is, and the one documented layout inside it.

The hub dir is chosen exactly as torch.hub chooses it::

    set_dir(d)  >  $TORCH_HOME/hub  >  $XDG_CACHE_HOME/torch/hub  >  ~/.cache/torch/hub

with ``~`` expanded.  One deliberate difference: a variable that is set but
empty counts as unset (the XDG rule); torch.hub turns ``TORCH_HOME=""`` into the
relative folder ``./hub``.

Layout (every path below is built here, nowhere else)::

    <hub_dir>/
      trusted_list                               torch.hub's list of trusted repos
      checkpoints/<url-key>/<file>               load_state_dict_from_url's cache
      checkpoints/<url-key>/<file>               + its record (url, size, mtime, sha256): the extended
                                                 attribute user.reprohub.record, or the sidecar
                                                 <file>.reprohub.json where files keep no attributes
      reprohub/repos/<source>/<owner>/<repo>/<commit>/       an extracted commit
      reprohub/repos/<source>/<owner>/<repo>/<commit>.json   its digests
      reprohub/refs/<source>/<owner>/<repo>.json             ref -> commit memory
      reprohub/git/<remote-key>.git                          mirrors for source="git"
      reprohub/responses/sha256/<sha256>                     bodies of requests repo and test code made
      reprohub/state/module-owners.json                      which distribution provides each module

``<url-key>`` is the first 32 hex digits of sha256(url), so two URLs with the
same basename never share a file (torch.hub's ``checkpoints/<basename>`` does).
Repos are keyed by full commit, so ``o/r:c_d``, ``o/r:c/d`` and ``o/r_c:d``,
which torch.hub folds into one folder, can never share one.  Every function
checks that what it returns stays inside the hub dir.

Example:
    >>> import os
    >>> layout = CacheLayout("/tmp/hub")
    >>> os.path.relpath(layout.artifact_path("https://h/x/w.pt"), "/tmp/hub").split(os.sep)[0]
    'checkpoints'
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from .. import settings
from ..errors import CachePathError
from ..fetch.urls import canonical_url
from ..refs import RepoRef, check_name, check_owner, is_full_commit

DEFAULT_CACHE_DIR = "~/.cache"
DEFAULT_GITHUB_API = settings.DEFAULT_GITHUB_API
SIDECAR_SUFFIX = ".reprohub.json"
# The shapes of the records kept beside cached content; a record of another shape counts as missing
# (read with reprohub.fetch.fsutil.read_record), so a damaged one costs a re-hash or a fetch, never a crash.
SIDECAR_FIELDS = {"url": str, "size": int, "mtime_ns": int, "sha256": str, "boot_id": str}
MANIFEST_FIELDS = {"commit": str, "host": str, "tree_sha256": str, "tree_sha256_v1": str, "files": int, "bytes": int,
                   "boot_id": str}
MAX_FILE_NAME = 200

_hub_dir: str | None = None
_UNSAFE_NAME_CHARS = re.compile(r"[\x00-\x1f/\\]")
_HOST_CHARS = re.compile(r"[^A-Za-z0-9.-]")


def get_dir() -> str:
    """The hub dir, with torch.hub's precedence (see the module docstring).

    Example:
        >>> set_dir("~/my-hub"); get_dir() == os.path.expanduser("~/my-hub")
        True
        >>> set_dir(None)  # back to the environment's choice
    """
    if _hub_dir is not None:
        return _hub_dir
    return os.path.join(_torch_home(), "hub")


def set_dir(d: "str | os.PathLike[str] | None") -> None:
    """Set the hub dir for this process (``None`` goes back to the environment).

    Example:
        >>> set_dir("/tmp/reprohub-doc"); get_dir()
        '/tmp/reprohub-doc'
        >>> set_dir(None)
    """
    global _hub_dir
    _hub_dir = None if d is None else os.path.expanduser(os.fspath(d))


def _torch_home() -> str:
    torch_home = settings.read(settings.TORCH_HOME) or os.path.join(
        settings.read(settings.XDG_CACHE_HOME) or DEFAULT_CACHE_DIR, "torch"
    )
    return os.path.expanduser(torch_home)


def url_key(url: str) -> str:
    """32 hex digits of sha256 of the canonical URL: the folder an artifact lives in."""
    return hashlib.sha256(canonical_url(url).encode("utf-8", "surrogatepass")).hexdigest()[:32]


def file_name_from_url(url: str) -> str:
    """The last path component of ``url``, as torch.hub names cached files.

    Example:
        >>> file_name_from_url("https://h/models/resnet18-5c106cde.pth?dl=1")
        'resnet18-5c106cde.pth'
    """
    return os.path.basename(urlsplit(url).path)


def check_file_name(name: str) -> str:
    """Return ``name`` if it is a safe single file name, else raise :class:`CachePathError`."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or _UNSAFE_NAME_CHARS.search(name)
        or len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME
        or name.endswith((SIDECAR_SUFFIX, ".lock", ".incomplete"))
    ):
        raise CachePathError(
            f"a plain file name (no '/', '\\\\' or control characters, 1-{MAX_FILE_NAME} bytes, not '.' or '..')",
            f"{name!r}",
            "pass file_name='something.pt' to choose the cached file's name",
        )
    return name


def source_key(base_url: str) -> str:
    """A folder name for a host (API base URL or Git remote), distinct per URL.

    Example:
        >>> source_key("https://api.github.com")
        'github'
        >>> source_key("http://127.0.0.1:8000/api").startswith("127.0.0.1-")
        True
    """
    normalized = base_url.rstrip("/")
    if normalized == DEFAULT_GITHUB_API:
        return "github"
    host = _HOST_CHARS.sub("_", urlsplit(normalized).hostname or "local").lstrip(".") or "host"
    return f"{host[:60]}-{hashlib.sha256(normalized.encode('utf-8', 'surrogatepass')).hexdigest()[:16]}"


def ensure_inside(root: "str | os.PathLike[str]", path: "str | os.PathLike[str]") -> Path:
    """Return ``path`` if it lies inside ``root``; else raise :class:`CachePathError`.

    The check is lexical (``..`` folded, links not followed): every component was built here from
    checked names, and a user who makes ``checkpoints/`` a symlink to a bigger disk keeps a working
    cache.

    Example:
        >>> ensure_inside("/hub", "/hub/a/../b").as_posix()
        '/hub/a/../b'
    """
    root_abs = os.path.normpath(os.path.abspath(root))
    path_abs = os.path.normpath(os.path.abspath(path))
    if path_abs != root_abs and not path_abs.startswith(root_abs.rstrip(os.sep) + os.sep):
        raise CachePathError(f"a path inside {root_abs}", path_abs, "report this spec as a reprohub bug")
    return Path(path)


def manifest_beside(repo_dir: "str | os.PathLike[str]") -> Path:
    """The record of an extracted commit's folder: ``<commit>.json`` beside ``<commit>/``."""
    repo_dir = Path(repo_dir)
    return repo_dir.with_name(repo_dir.name + ".json")


def tree_paths(repo_dir: "str | os.PathLike[str]") -> "list[str] | None":
    """The paths an extracted commit's tree was extracted with, from its record (``None`` for a record
    written before they were kept): what its digest covers, whatever the repo's code wrote there since."""
    from ..fetch.fsutil import read_record

    record = read_record(manifest_beside(repo_dir))
    paths = record.get("paths") if record else None
    return paths if isinstance(paths, list) and all(isinstance(p, str) for p in paths) else None


class CacheLayout:
    """Every path reprohub uses inside one hub dir.

    Example:
        >>> layout = CacheLayout("/tmp/hub")
        >>> layout.repo_dir("github", RepoRef("a", "b"), "f" * 40).name == "f" * 40
        True
    """

    def __init__(self, hub_dir: "str | os.PathLike[str]") -> None:
        self.root = Path(os.path.expanduser(os.fspath(hub_dir)))

    @property
    def trusted_list(self) -> Path:
        return self.root / "trusted_list"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def internal(self) -> Path:
        return self.root / "reprohub"

    @property
    def module_owners(self) -> Path:
        """The installed distributions' module map, kept between processes (:mod:`reprohub.golden.owners`)."""
        return self.internal / "state" / "module-owners.json"

    def artifact_path(self, url: str, file_name: str | None = None) -> Path:
        """Where the artifact downloaded from ``url`` is cached."""
        name = check_file_name(file_name if file_name is not None else file_name_from_url(url))
        return ensure_inside(self.root, self.checkpoints / url_key(url) / name)

    def response_body(self, sha256: str) -> Path:
        """The body of a request repo or test code made (:mod:`reprohub.lock.hermetic`), by its digest."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise CachePathError("a sha256 as 64 lower-case hex digits", repr(sha256), "re-record the lock")
        return self.internal / "responses" / "sha256" / sha256

    def response_binding(self, key: str) -> Path:
        """Which cached body answers the request ``key`` (``"GET <url>"``): its digest, named by the key's sha256."""
        return self.internal / "responses" / "requests" / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()

    def repo_dir(self, source: str, repo: RepoRef, commit: str) -> Path:
        """The extracted tree of ``repo`` at ``commit``."""
        return self._repo_base(source, repo) / _checked_commit(commit)

    def repo_manifest(self, source: str, repo: RepoRef, commit: str) -> Path:
        """The digests recorded for an extracted commit (beside its folder: see :func:`manifest_beside`)."""
        return manifest_beside(self.repo_dir(source, repo, commit))

    def refs_file(self, source: str, repo: RepoRef) -> Path:
        """The remembered ref -> commit resolutions of one repo."""
        check_owner(repo.owner)
        check_name(repo.name)
        base = self.internal / "refs" / _checked_source(source) / repo.owner
        return ensure_inside(self.root, base / f"{repo.name}.json")

    def git_mirror(self, remote: str) -> Path:
        """A bare mirror of a Git remote."""
        return ensure_inside(self.root, self.internal / "git" / f"{source_key(remote)}.git")

    @staticmethod
    def holds_dir(path: "str | os.PathLike[str]") -> bool:
        """Whether an extracted tree's folder is really there: a folder, not a link in its place.

        Extraction only ever renames a real folder into place, so a link there was planted; it is
        never followed (to code outside the cache), but removed and extracted anew.  Folders above it
        may be links (a cache moved to a bigger disk).

        Example:
            >>> import tempfile, os; d = tempfile.mkdtemp(); os.symlink("/usr", d + "/c")
            >>> CacheLayout.holds_dir(d), CacheLayout.holds_dir(d + "/c")
            (True, False)
        """
        return os.path.isdir(path) and not os.path.islink(path)

    def _repo_base(self, source: str, repo: RepoRef) -> Path:
        check_owner(repo.owner)
        check_name(repo.name)
        return ensure_inside(self.root, self.internal / "repos" / _checked_source(source) / repo.owner / repo.name)


def _checked_commit(commit: str) -> str:
    if not is_full_commit(commit):
        raise CachePathError("a full 40-hex commit", repr(commit), "resolve the ref before asking for its folder")
    return commit


def _checked_source(source: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,100}", source) or ".." in source:
        raise CachePathError("a source key made by source_key()", repr(source), "build it with source_key(url)")
    return source
