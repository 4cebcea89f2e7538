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

__all__ = ["TABLES", "ArtifactPin", "GoldenPin", "Lockfile", "RepoPin"]


def __getattr__(name: str):
    """The format's names, imported when first asked for: a warm load imports ``reprohub.lock.record`` (what a
    Hub used) but never parses a lock, and the TOML reader and writer cost a fresh process 7 ms."""
    if name in __all__:
        from . import lockfile

        return getattr(lockfile, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
