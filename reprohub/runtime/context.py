"""Which Hub is in charge right now: the one whose repo code runs, else the default one.

This small module sits below both :mod:`reprohub.runtime.intercept` (which
routes torch.hub's functions to :func:`current_hub`) and :mod:`reprohub.api`
(which owns the default Hub and registers it here with
:func:`set_default_provider`), so neither imports the other.

Example:
    >>> set_default_provider(lambda: "the default hub")
    >>> current_hub()
    'the default hub'
    >>> with running("a repo's hub"):
    ...     current_hub()
    "a repo's hub"
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable, Iterator

_active: contextvars.ContextVar[Any] = contextvars.ContextVar("reprohub_active_hub", default=None)
_default_provider: Callable[[], Any] | None = None


def set_default_provider(provider: Callable[[], Any]) -> None:
    """Register the function that returns the default Hub (:func:`reprohub.api.default_hub`)."""
    global _default_provider
    _default_provider = provider


def current_hub() -> Any:
    """The Hub whose repo code is running in this context, else the default Hub."""
    hub = _active.get()
    if hub is not None:
        return hub
    if _default_provider is None:  # only reachable if reprohub.api was never imported
        from ..errors import ReprohubError

        raise ReprohubError("a default Hub", "none registered", "import reprohub before routing torch.hub")
    return _default_provider()


@contextlib.contextmanager
def running(hub: Any) -> Iterator[None]:
    """Make ``hub`` the current Hub of this context for the block (nestable, thread- and task-local)."""
    token = _active.set(hub)
    try:
        yield
    finally:
        _active.reset(token)
