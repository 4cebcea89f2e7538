"""Route torch.hub's own functions through a reprohub Hub while repo code runs.

Real ``hubconf.py`` files call ``torch.hub.load_state_dict_from_url``,
``torch.hub.download_url_to_file``, ``torch.utils.model_zoo.load_url`` and
nested ``torch.hub.load`` directly.  Inside :func:`routed`, those names point to
thin forwarders that send each call to the innermost active Hub, so the
downloads are cached, hashed, pinned and recorded like everything else.  The
originals are put back when the outermost block ends.  A hubconf that bound a
forwarder at import time (``from torch.hub import load_state_dict_from_url``)
keeps working afterwards: with no active Hub, a forwarder calls the default one.

Example:
    >>> import torch.hub
    >>> from reprohub import Hub
    >>> hub = Hub(hub_dir=tmp)
    >>> with routed(hub):
    ...     state = torch.hub.load_state_dict_from_url(weights_url, progress=False)   # goes through hub
    >>> [a.url == weights_url for a in hub.recorder.artifacts()], torch.hub.load is load
    ([True], False)
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import sys
import threading
from typing import Any, Iterator

from .context import current_hub, running

_depth = 0
_saved: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


active_hub = current_hub

def load_state_dict_from_url(url, model_dir=None, map_location=None, progress=True, check_hash=False,
                             file_name=None, weights_only=False):
    """Forwarder for ``torch.hub.load_state_dict_from_url`` (keeps torch.hub's ``weights_only=False``)."""
    return active_hub().load_state_dict_from_url(url, model_dir, map_location, progress, check_hash, file_name,
                                                 weights_only=weights_only)


def download_url_to_file(url, dst, hash_prefix=None, progress=True):
    """Forwarder for ``torch.hub.download_url_to_file``."""
    active_hub().download_url_to_file(url, dst, hash_prefix, progress)


def load(repo_or_dir, model, *args, **kwargs):
    """Forwarder for a nested ``torch.hub.load``."""
    return active_hub().load(repo_or_dir, model, *args, **kwargs)


_TARGETS = (
    ("torch.hub", "load_state_dict_from_url", load_state_dict_from_url),
    ("torch.hub", "download_url_to_file", download_url_to_file),
    ("torch.hub", "load", load),
    ("torch.utils.model_zoo", "load_url", load_state_dict_from_url),
)


def _patch() -> None:
    for module_name, attr, forwarder in _TARGETS:
        module = sys.modules.get(module_name)
        if module is None:
            module = importlib.import_module(module_name)
        original = _saved[(module_name, attr)] = getattr(module, attr)
        if getattr(forwarder, "__wrapped__", None) is None:
            # torch.hub's name, docstring and signature: a hubconf that re-exports one of these as an
            # entrypoint shows in help() exactly as under torch.hub (facebookresearch/WSL-Images does)
            functools.update_wrapper(forwarder, original)
        setattr(module, attr, forwarder)


def _unpatch() -> None:
    for (module_name, attr), original in _saved.items():
        setattr(sys.modules[module_name], attr, original)
    _saved.clear()


@contextlib.contextmanager
def routed(hub, import_torch: bool = True) -> Iterator[None]:
    """Make ``hub`` the target of torch.hub's functions for the block (nestable).

    With ``import_torch=False`` torch.hub is patched only if already imported.
    """
    global _depth
    torch_present = "torch.hub" in sys.modules or (import_torch and importlib.util.find_spec("torch") is not None)
    with _lock:
        if not _saved and torch_present:
            _patch()
        _depth += 1
    try:
        with running(hub):
            yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _unpatch()
