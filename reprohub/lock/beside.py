"""``hub-responses/``: the small bodies that travel with the project, beside the lock, and where they may go.

A check on a fresh machine replays small answers (at most :data:`BESIDE_MAX` bytes: release JSON with
its download counts, a config, a sample image) from here instead of asking the origin again, whose
answer may have changed (:mod:`reprohub.lock.hermetic`).  They are input to repo code: review them like
the lock.

**Bound to their request.**  A file's name is ``<request id>-<sha256><suffix>``: the request id (the
first 16 hex digits of the sha256 of its ``[requests]`` key) ties the bytes to the request they
answered.  A pull request that edits only ``hub.lock`` -- giving ``GET .../labels.txt`` the digest of
another body that sits here -- finds no file under that request's name, so the body is fetched from
the origin and its digest must match; the swap fails.  (Names before this binding, ``<sha256><suffix>``,
are no longer read: ``--hub-update`` writes the new ones, ``--hub-prune`` removes the old.)

**Never through a link out.**  ``hub-responses`` committed as a link to ``../outside`` would let a prune
delete, and an update write, files outside the project.  Writing and pruning refuse it
(:func:`~reprohub.fetch.fsutil.inside_project`); replaying does not read through it.

Example:
    >>> pin = RequestPin("GET https://h/a", 200, "ab" * 32, 2, {"content-type": "application/json"})
    >>> beside_name(pin)
    '69ab56abef5017e8-abababababababababababababababababababababababababababababababab.json'
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from ..cache.bodies import known_body
from ..cache.layout import CacheLayout
from ..errors import ProjectPathError, ReprohubError
from ..fetch.download import Downloader
from ..fetch.fsutil import inside_project
from ..redact import capped
from .lockfile import Lockfile, RequestPin

BESIDE_FOLDER = "hub-responses"
BESIDE_MAX = 64 << 10
_SUFFIXES = (("application/json", ".json"), ("text/", ".txt"), ("image/jpeg", ".jpg"), ("image/png", ".png"),
             ("application/x-yaml", ".yaml"))


def request_id(key: str) -> str:
    """The short id of a ``[requests]`` key in file names: the first 16 hex digits of its sha256."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def beside_name(pin: RequestPin) -> str:
    """The file name of a small body beside the lock: its request's id, its digest, and a suffix from its type
    for review tools."""
    kind = pin.headers.get("content-type", "").split(";")[0].strip().lower()
    suffix = next((suffix for prefix, suffix in _SUFFIXES if kind.startswith(prefix)), "")
    return f"{request_id(pin.key)}-{pin.sha256}{suffix}"


def beside_folder(lock_path: "str | os.PathLike[str]") -> Path:
    """``hub-responses/`` beside the lock, for writing or deleting in it.

    Raises:
        ProjectPathError: it is a link that leads out of the lock's folder.
    """
    folder = Path(lock_path).parent / BESIDE_FOLDER
    return inside_project(folder.parent, folder, f"{BESIDE_FOLDER}/ (beside {Path(lock_path).name})")


def beside_body(pin: RequestPin, lock_dir: "str | os.PathLike[str]") -> "Path | None":
    """The file beside the lock answering ``pin`` (unverified), or ``None``: none, or the folder leads out."""
    try:
        place = beside_folder(Path(lock_dir) / "hub.lock") / beside_name(pin)
    except ProjectPathError:
        return None
    return place if place.is_file() else None


def response_body_at_hand(pin: RequestPin, layout: CacheLayout, lock_dir: "str | os.PathLike[str]") -> "Path | None":
    """The file holding a pinned request's body on this machine, unverified: in the cache, else beside the lock
    (``None`` where neither has it, or the body is empty)."""
    if not pin.size:
        return None
    cached = layout.response_body(pin.sha256)
    return cached if cached.is_file() else beside_body(pin, lock_dir)


def response_body_for_bundle(pin: RequestPin, layout: CacheLayout, lock_path: str) -> Path:
    """The file of a pinned request's body for ``reprohub bundle`` (verified as it is copied).

    Raises:
        ReprohubError: neither the cache nor the lock's folder has it.
    """
    path = response_body_at_hand(pin, layout, Path(lock_path).resolve().parent)
    if path is None:
        raise ReprohubError(f"the body of {pin.key} (sha256 {pin.sha256}) in the cache or beside the lock",
                            "neither has it", f"run the locked tests once on this machine (pytest --hub-lock "
                            f"{lock_path}), then bundle again")
    return path


def _wanted_beside(lock: Lockfile) -> dict[str, RequestPin]:
    """The files ``hub-responses/`` should hold for ``lock``: each small body (at most BESIDE_MAX bytes) by name."""
    return {beside_name(pin): pin for pin in lock.requests.values() if 0 < pin.size <= BESIDE_MAX}


def write_beside(lock: Lockfile, lock_path: "str | os.PathLike[str]", layout: CacheLayout) -> list[str]:
    """Copy each small pinned body from the cache into ``hub-responses/`` beside the lock, where a check on a
    fresh machine replays it.  Returns what it wrote, as report lines.

    Raises:
        ProjectPathError: ``hub-responses`` is a link out of the project (nothing is written).

    Example:
        >>> write_beside(Lockfile(), tmp + "/hub.lock", CacheLayout(tmp + "/hub"))
        []
    """
    folder = beside_folder(lock_path)
    wrote, missing = [], []
    for name, pin in sorted(_wanted_beside(lock).items()):
        target = folder / name
        if target.is_file():
            continue
        known = known_body(layout, pin.sha256)
        if known is None:
            missing.append(f"  warning: the body of {pin.key} is not in this cache; {target} was not written")
            continue
        folder.mkdir(exist_ok=True)
        Downloader(offline=True).fetch(known.as_uri(), target, expected_sha256=pin.sha256, progress=False)
        wrote.append(f"  wrote {folder.name}/{name} ({pin.size} bytes, the answer to {pin.key})")
    return capped(wrote, f"files written into {BESIDE_FOLDER}/") + capped(missing, "bodies not in this cache")


def prune_beside(lock: Lockfile, lock_path: "str | os.PathLike[str]") -> list[str]:
    """Delete the files of ``hub-responses/`` that no pin of ``lock`` names (after a prune was written).

    Raises:
        ProjectPathError: ``hub-responses`` is a link out of the project (nothing is deleted).
    """
    folder = beside_folder(lock_path)
    wanted = _wanted_beside(lock)
    stale = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in wanted) if folder.is_dir() else []
    for path in stale:
        path.unlink()
    return capped([f"  pruned {folder.name}/{path.name}" for path in stale], f"files pruned from {BESIDE_FOLDER}/")
