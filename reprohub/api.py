"""torch.hub's module-level functions, over a default :class:`~reprohub.hub.Hub`.

Same names, signatures and defaults as torch 2.13's ``torch.hub`` (but
``load_state_dict_from_url`` defaults to ``weights_only=True``), so a script
can say ``import reprohub as hub`` instead of ``import torch.hub as hub``.

Example:
    >>> import reprohub
    >>> reprohub.set_dir("/tmp/hub"); reprohub.get_dir()
    '/tmp/hub'
    >>> reprohub.set_dir(None)
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from .fetch.download import Downloaded
from .hub import Hub
from .cache.layout import get_dir
from . import settings
from .runtime.context import set_default_provider

_default: tuple[tuple, Hub] | None = None


_override: Hub | None = None
# the settings a Hub reads when built: a change rebuilds the default Hub
_HUB_SETTINGS = (settings.GITHUB_API_URL, settings.ARCHIVE_URL, settings.GITHUB_TOKEN, settings.MIRROR)


@contextlib.contextmanager
def default_hub_override(hub: Hub) -> Iterator[None]:
    """Make ``hub`` the default Hub for the block (the pytest plugin binds it to the lock)."""
    global _override
    previous, _override = _override, hub
    try:
        yield
    finally:
        _override = previous


def default_hub() -> Hub:
    """The Hub the module-level functions use, rebuilt when its environment changes."""
    global _default
    if _override is not None:
        return _override
    key = (get_dir(), settings.read_flag(settings.OFFLINE), *(settings.read(name) for name in _HUB_SETTINGS))
    if _default is None or _default[0] != key:
        _default = (key, Hub())
    return _default[1]


set_default_provider(default_hub)


def list(github: str, force_reload: bool = False, skip_validation: bool = False,
         trust_repo: "bool | str | None" = "check", verbose: bool = True) -> "list[str]":
    """The entrypoints of ``github`` (``owner/repo[:ref]``), sorted.

    Example:
        >>> reprohub.list("acme/tiny:v1", trust_repo=True, verbose=False)
        ['tiny_mlp']
    """
    return default_hub().list(github, force_reload, skip_validation, trust_repo, verbose)


def help(github: str, model: str, force_reload: bool = False, skip_validation: bool = False,
         trust_repo: "bool | str | None" = "check") -> str | None:
    """The docstring of entrypoint ``model`` of ``github``.

    Example:
        >>> print(reprohub.help("acme/tiny:v1", "tiny_mlp", trust_repo=True).splitlines()[0])
        A two-layer MLP (3 -> hidden -> 2).
    """
    return default_hub().help(github, model, force_reload, skip_validation, trust_repo)


def load(repo_or_dir: str, model: str, *args: Any, source: str = "github", trust_repo: "bool | str | None" = "check",
         force_reload: bool = False, verbose: bool = True, skip_validation: bool = False, **kwargs: Any) -> Any:
    """Load entrypoint ``model`` from a repo (``source`` "github", "git" or "local").

    Example:
        >>> import torch
        >>> model = reprohub.load("acme/tiny:v1", "tiny_mlp", pretrained=True, trust_repo=True, verbose=False)
        >>> model(torch.ones(1, 3)).shape
        torch.Size([1, 2])
    """
    return default_hub().load(repo_or_dir, model, *args, source=source, trust_repo=trust_repo,
                              force_reload=force_reload, verbose=verbose, skip_validation=skip_validation, **kwargs)


def download_url_to_file(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True, *,
                         durable: bool = False) -> Downloaded:
    """Download ``url`` to ``dst``: sha256 in flight, retries, resume, atomic rename.

    ``durable=True`` also flushes the file to disk before the rename, so it survives a power loss
    (torch.hub never flushes; reprohub's own cache needs no flush, see the README's durability note).

    Example:
        >>> got = reprohub.download_url_to_file(weights_url, tmp + "/w.pt", progress=False)
        >>> len(got.sha256), got.path.stat().st_size == got.size
        (64, True)
    """
    return default_hub().download_url_to_file(url, dst, hash_prefix, progress, durable=durable)


def load_state_dict_from_url(url: str, model_dir: str | None = None, map_location: Any = None, progress: bool = True,
                             check_hash: bool = False, file_name: str | None = None, weights_only: bool = True) -> Any:
    """Download once, verify and load a checkpoint (``weights_only=True`` by default).

    Example:
        >>> sd = reprohub.load_state_dict_from_url(hashed_url, check_hash=True, progress=False)  # tiny_mlp-<sha256[:8]>.pt
        >>> sorted(sd)
        ['fc1.bias', 'fc1.weight', 'fc2.bias', 'fc2.weight']
    """
    return default_hub().load_state_dict_from_url(url, model_dir, map_location, progress, check_hash, file_name,
                                                  weights_only=weights_only)
