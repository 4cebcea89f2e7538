"""Deserialize checkpoint files as torch.hub does, with safer defaults.

``weights_only=True`` by default (torch.load's own default since 2.6; torch.hub
overrides it to ``False``).  Files in torch's zip format are memory-mapped, so a
cache hit pays for the pages it touches, not for a full read.  The pre-1.6
"legacy zip" format (a zip holding one file) is extracted safely and loaded.

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
from typing import Any

from ..fetch.archive import extract_zip


def _zip_members(path: "str | os.PathLike[str]") -> list[zipfile.ZipInfo] | None:
    """The members of a zip file, or None for a non-zip (pre-1.6 pickle) checkpoint."""
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.infolist()
    except zipfile.BadZipFile:
        return None


def load_checkpoint(path: "str | os.PathLike[str]", map_location: Any = None, weights_only: bool = True) -> Any:
    """``torch.load`` a cached checkpoint: memory-mapped when possible, legacy zips handled.

    The zip directory is read once; a cache hit costs that and the pages the caller touches.
    A zip holding exactly one file is torch.hub's pre-1.6 "legacy zip" format.
    """
    import torch

    path = Path(path)
    members = _zip_members(path)
    if members is not None and len(members) == 1 and not members[0].is_dir():
        target = path.parent / members[0].filename
        if not target.exists():
            extract_zip(path, path.parent, strip_top=False)
        return torch.load(target, map_location=map_location, weights_only=weights_only)
    return torch.load(path, map_location=map_location, weights_only=weights_only, mmap=members is not None)
