"""Deserialize checkpoint files as torch.hub does, with safer defaults.

``weights_only=True`` by default (torch.load's own default since 2.6; torch.hub
overrides it to ``False``).  Files in torch's zip format are memory-mapped, so a
cache hit pays for the pages it touches, not for a full read.  The pre-1.6
"legacy zip" format (a zip holding one file) is extracted once, under the
file's lock, into a temporary file renamed into place: many processes loading it
at once, or one killed while extracting, never leave a half-written file that
later loads would read.

A file that is no checkpoint at all (a login page served with 200, an error text) is recognised by
its first bytes when loading it fails: :func:`looks_like_checkpoint`.

Example:
    >>> import torch
    >>> torch.save({"w": torch.ones(2)}, tmp + "/w.pt")
    >>> load_checkpoint(tmp + "/w.pt")["w"]
    tensor([1., 1.])
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, Callable

from ..errors import CheckpointError
from ..fetch.fsutil import make_temp_dir_beside, remove_tree
from ..fetch.locks import file_lock, lock_path

# torch's zip format, and the pickle protocols torch.save has used (2 to 5) for the legacy format
_CHECKPOINT_STARTS = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _zip_members(path: "str | os.PathLike[str]") -> list[zipfile.ZipInfo] | None:
    """The members of a zip file, or None for a non-zip (pre-1.6 pickle) checkpoint."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.infolist()
    except zipfile.BadZipFile:
        return None


def looks_like_checkpoint(path: "str | os.PathLike[str]") -> tuple[bool, bytes]:
    """Whether a file starts as a torch checkpoint does (a zip or a pickle), and its first bytes.

    Example:
        >>> _ = open(tmp + "/page.pt", "wb").write(b"<!DOCTYPE html><title>Sign in</title>")
        >>> looks_like_checkpoint(tmp + "/page.pt")
        (False, b'<!DOCTYPE html><title>Sign in</title>')
    """
    with open(path, "rb") as f:
        head = f.read(64)
    return head.startswith(_CHECKPOINT_STARTS), head


def not_a_checkpoint(url: str, path: Path, size: int, evict: Callable[[Path], None]) -> CheckpointError | None:
    """After a failed ``torch.load``: a :class:`CheckpointError` if the file is no checkpoint at all (a
    login page served with 200), evicting it so a fixed host is asked again; else ``None`` (torch's own
    error stands, e.g. a ``weights_only`` refusal, and the file stays)."""
    ok, head = looks_like_checkpoint(path)
    if ok:
        return None
    evict(path)
    page = " (an HTML page: a login, error or redirect page?)" if b"<" in head[:16] else ""
    # the message masks the URL's secrets itself (reprohub.redact)
    return CheckpointError(f"a torch checkpoint from {url}", f"{size} bytes starting {head[:48]!r}{page}",
                           "the file was removed from the cache; check the URL (does it need credentials or a "
                           "token?) and load again")


def load_checkpoint(path: "str | os.PathLike[str]", map_location: Any = None, weights_only: bool = True) -> Any:
    """``torch.load`` a cached checkpoint: memory-mapped when possible, legacy zips handled.

    The zip directory is read once; a cache hit costs that and the pages the caller touches.
    A zip holding exactly one file is torch.hub's pre-1.6 "legacy zip" format.
    """
    import torch

    path = Path(path)
    members = _zip_members(path)
    if members is not None and len(members) == 1 and not members[0].is_dir():
        target = _extract_legacy(path, members[0].filename)
        return torch.load(target, map_location=map_location, weights_only=weights_only)
    return torch.load(path, map_location=map_location, weights_only=weights_only, mmap=members is not None)


def _extract_legacy(path: Path, member: str) -> Path:
    """The inner file of a legacy zip beside it, extracted once: under the zip's lock, into a temporary
    folder, then renamed into place, so the target is either absent or complete."""
    target = path.parent / member
    if target.is_file():
        return target
    from ..fetch.archive import extract_zip  # the safe extractor, for this old format only

    with file_lock(lock_path(target), f"extracting {path.name}"):
        if not target.is_file():
            tmp = make_temp_dir_beside(target)
            try:
                extract_zip(path, tmp, strip_top=False, threads=1)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp / member, target)
            finally:
                remove_tree(tmp)
    return target
