"""What the hub dir holds and where: the layout, the artifact store, checkpoint loading, ``reprohub cache``.

* :mod:`~reprohub.cache.layout` -- the hub dir (torch.hub's precedence) and every path inside it;
* :mod:`~reprohub.cache.store` -- fetch-once, verify-always cached artifacts with sidecars;
* :mod:`~reprohub.cache.weights` -- ``torch.load`` of cached checkpoints (memory-mapped, legacy zips);
* :mod:`~reprohub.cache.tool` -- ``reprohub cache ls|rm|prune``.

The names of the old flat module ``reprohub.cache`` are re-exported here.

Example:
    >>> from reprohub.cache import sidecar_path
    >>> sidecar_path("/h/checkpoints/k/w.pt").name
    'w.pt.reprohub.json'
"""

from ..fetch.fsutil import sha256_file
from ..fetch.locks import lock_path
from .store import ArtifactStore, cached_digest, sidecar_path, write_sidecar

__all__ = ["ArtifactStore", "cached_digest", "lock_path", "sha256_file", "sidecar_path", "write_sidecar"]
