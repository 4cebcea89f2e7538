"""reprohub: reproducible, pinned, verified use of PyTorch Hub models.

A drop-in for ``torch.hub`` (``list``, ``help``, ``load``,
``download_url_to_file``, ``load_state_dict_from_url``, ``get_dir``,
``set_dir``) that resolves every ref to a commit, hashes every download while
it streams, keeps a cache that is safe under many processes, extracts archives
safely, isolates repos from each other, and works offline from a warm cache.

Importing reprohub does not import torch.

Example:
    >>> import reprohub
    >>> reprohub.parse_ref("pytorch/vision:v0.10.0").ref
    'v0.10.0'
"""

from .settings import VERSION as __version__  # noqa: E402,F401

from .api import default_hub, download_url_to_file, help, list, load, load_state_dict_from_url  # noqa: E402
from .errors import *  # noqa: E402,F401,F403
from .errors import ReprohubError  # noqa: E402
from .hub import Hub  # noqa: E402
from .cache.layout import get_dir, set_dir  # noqa: E402
from .lock.record import Recorder  # noqa: E402
from .refs import RepoRef, format_ref, parse_ref  # noqa: E402

__all__ = [
    "Hub", "Recorder", "RepoRef", "ReprohubError", "default_hub", "download_url_to_file", "format_ref", "get_dir",
    "help", "list", "load", "load_state_dict_from_url", "parse_ref", "set_dir",
]
