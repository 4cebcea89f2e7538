"""Which installed distributions provide each top-level module (``cv2`` -> ``opencv-python``), remembered
across processes.

A golden records the versions of the distributions the loaded repo's code imports
(:func:`reprohub.golden.environment.capture`), which takes the map of
``importlib.metadata.packages_distributions()``.  That call reads the ``top_level.txt`` or ``RECORD`` of every
installed distribution: 185 ms with 135 installed on this project's VM, once in every pytest process
(each xdist worker too), more where hundreds are installed.  The map is a function of what is installed, so
:func:`module_owners` keeps it in the hub dir (``reprohub/state/module-owners.json``) under a fingerprint of
every distribution's metadata folder, ``RECORD`` and ``top_level.txt`` (path, size and mtime: an install, an
upgrade or an uninstall changes them), and reads it back while the fingerprint matches (2 ms of ``stat``
calls).  A damaged file, another fingerprint or a distribution of an unknown kind (no metadata folder) means
the map is computed again; a hub dir that cannot be written only means it is not kept.

Example:
    >>> "pytest" in module_owners()["_pytest"]
    True
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
from importlib import metadata

from ..cache.layout import CacheLayout, get_dir
from ..fetch.fsutil import atomic_write_bytes, read_record

_FINGERPRINTED = ("", "RECORD", "top_level.txt")  # what packages_distributions reads, and the folder itself


@functools.lru_cache(maxsize=1)
def module_owners() -> "dict[str, list[str]]":
    """Top-level module -> the distributions that provide it, as ``packages_distributions()`` gives it; read
    from the hub dir while what is installed has not changed (see the module docstring)."""
    fingerprint = installed_fingerprint()
    path = CacheLayout(get_dir()).module_owners
    kept = read_record(path, {"fingerprint": str, "owners": dict}) if fingerprint else None
    if kept is not None and kept["fingerprint"] == fingerprint:
        return kept["owners"]
    owners = {name: list(dists) for name, dists in metadata.packages_distributions().items()}
    if fingerprint:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, json.dumps({"fingerprint": fingerprint, "owners": owners}).encode(), durable=False)
        except OSError:
            pass  # a read-only hub dir: computed again next time
    return owners


def installed_fingerprint() -> str:
    """A digest of every installed distribution's metadata (path, size, mtime of its folder, ``RECORD`` and
    ``top_level.txt``), in ``sys.path`` order; ``""`` where a distribution has no metadata folder to look at."""
    digest = hashlib.sha256()
    for dist in metadata.distributions():
        folder = getattr(dist, "_path", None)  # a PathDistribution's metadata folder
        if not isinstance(folder, pathlib.Path):  # none, or one inside a zip file: nothing to stat
            return ""
        for name in _FINGERPRINTED:
            place = os.path.join(folder, name)
            try:
                info = os.stat(place)
                digest.update(f"{place}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
            except OSError:
                digest.update(f"{place}\0-\n".encode())
    return digest.hexdigest()
