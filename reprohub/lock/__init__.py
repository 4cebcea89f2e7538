"""``hub.lock`` and everything that reads or enforces it.

* :mod:`~reprohub.lock.lockfile` -- the file format: read, check, write deterministically;
* :mod:`~reprohub.lock.record` -- what a Hub used (repos, artifacts), and the ``Pins`` it consults;
* :mod:`~reprohub.lock.session` -- a lock applied to one run: check, update, refresh, xdist merge;
* :mod:`~reprohub.lock.verify` -- re-hash the cache and goldens against a lock;
* :mod:`~reprohub.lock.bundle` -- write everything a lock pins as a static, content-addressed folder;
* :mod:`~reprohub.lock.mirror` -- read pinned content back from bundles, verified before use;
* :mod:`~reprohub.lock.report` -- the pytest summary lines.

The names of the old flat module ``reprohub.lock`` are re-exported here.

Example:
    >>> from reprohub.lock import Lockfile
    >>> Lockfile().entry_count()
    {'repos': 0, 'artifacts': 0, 'goldens': 0}
"""

from .lockfile import TABLES, ArtifactPin, GoldenPin, Lockfile, RepoPin

__all__ = ["TABLES", "ArtifactPin", "GoldenPin", "Lockfile", "RepoPin"]
