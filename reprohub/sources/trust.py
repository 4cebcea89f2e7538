"""Which repos may run code here: torch.hub's ``trust_repo`` and ``trusted_list``.

Meanings, as torch.hub's: ``True`` trusts (and remembers) the repo; ``"check"``
loads it if it is already trusted, else asks; ``False`` always asks; ``None``
loads it with a warning.  A repo is trusted when its owner is one of torch.hub's
trusted owners, when ``owner_repo`` is in ``<hub_dir>/trusted_list``, when
torch.hub already downloaded it, when ``REPROHUB_TRUST`` names it
(``owner/repo`` or ``owner/*``, comma-separated, or ``all``), or when a
reviewed lockfile pins it.  Where torch.hub would call ``input()`` with no
terminal (CI) and crash with ``EOFError``, reprohub raises
:class:`~reprohub.errors.UntrustedRepoError` saying how to trust the repo.

``trusted_list`` grows by one appended line per name, as torch.hub's does, under its lock, so two
processes adding names at once keep both.  It is not flushed to disk (torch.hub does not flush it
either, and two flushes per new name were the only ones left on a cold load): after a power loss the list
may lack its last lines, or be empty.  That fails closed -- a missing name is only asked for again,
and an entry matches a whole line, so a torn line (or one read while it is being appended) trusts
nothing it did not name.

Example:
    >>> is_trusted_by_env("acme/model", "acme/*,other/x")
    True
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Callable

from .. import settings
from ..cache.layout import CacheLayout
from ..errors import UntrustedRepoError
from ..fetch.fsutil import writable
from ..fetch.locks import file_lock

log = logging.getLogger("reprohub")
ENV_TRUST = settings.TRUST
TRUSTED_OWNERS = ("facebookresearch", "facebookincubator", "pytorch", "fairinternal")
TRUST_VALUES = (True, False, "check", None)


def is_trusted_by_env(repo: str, value: str | None) -> bool:
    """Whether ``REPROHUB_TRUST``'s value names ``repo`` (``owner/repo``)."""
    owner = repo.split("/", 1)[0]
    for item in (value or "").split(","):
        item = item.strip()
        if item in ("all", "1", "*", repo, f"{owner}/*"):
            return True
    return False


def check_trust(
    layout: CacheLayout,
    repo: str,
    list_name: str,
    trust_repo: "bool | str | None",
    legacy_folder: str | None = None,
    pinned: bool = False,
    ask: Callable[[str], str] | None = None,
    extra: str | None = None,
) -> None:
    """Allow ``repo`` to run, ask, or raise :class:`UntrustedRepoError`.

    Args:
        repo: ``owner/repo`` (shown to the user).
        list_name: the line in ``trusted_list`` (torch.hub writes ``owner_repo``).
        trust_repo: ``True``, ``False``, ``"check"`` or ``None``.
        legacy_folder: torch.hub's ``owner_repo_ref`` folder; present means trusted.
        pinned: the repo is pinned in an active lockfile.
        ask: prompt function (default ``input`` when stdin is a terminal).
        extra: more trusted patterns, as ``REPROHUB_TRUST`` (the plugin's ``--hub-trust``).
    """
    if trust_repo not in TRUST_VALUES:
        raise UntrustedRepoError('trust_repo True, False, "check" or None', repr(trust_repo), "pass one of those")
    trusted = pinned or is_trusted_by_env(repo, extra) or _is_trusted(layout, repo, list_name, legacy_folder)
    if trust_repo is None and not trusted:
        warnings.warn(f"You are about to run code from {repo}, which is not in your trusted list. "
                      "Pass trust_repo=True to trust it.", stacklevel=4)
    if trust_repo is False or (trust_repo == "check" and not trusted):
        _confirm(repo, ask)
    if not trusted:
        _remember(layout, list_name)


def _is_trusted(layout: CacheLayout, repo: str, list_name: str, legacy_folder: str | None) -> bool:
    owner = repo.split("/", 1)[0]
    if owner in TRUSTED_OWNERS or is_trusted_by_env(repo, settings.read(ENV_TRUST)):
        return True
    if legacy_folder and (layout.root / legacy_folder).is_dir():
        return True
    return list_name in _read_list(layout)


def _read_list(layout: CacheLayout) -> set[str]:
    try:
        return {line.strip() for line in layout.trusted_list.read_text().splitlines()}
    except FileNotFoundError:
        return set()


def _confirm(repo: str, ask: Callable[[str], str] | None) -> None:
    how = (f"pass trust_repo=True, set {ENV_TRUST}={repo} (or {ENV_TRUST}=all in a sandbox), "
           f"record with `pytest --hub-update --hub-trust {repo}` (ini: hub_trust), or pin it in a reviewed hub.lock")
    if ask is None:
        if not (sys.stdin and sys.stdin.isatty()):
            raise UntrustedRepoError(f"{repo} to be trusted", "an untrusted repo and no terminal to ask", how)
        ask = input
    answer = ask(f"The repository {repo} is not in your trusted list. Do you trust it and wish to add it (y/N)? ")
    if answer.strip().lower() not in ("y", "yes"):
        raise UntrustedRepoError(f"{repo} to be trusted", f"the answer {answer!r}", how)


def _remember(layout: CacheLayout, list_name: str) -> None:
    """Add ``list_name`` to ``trusted_list`` as torch.hub does, by appending its line (under the list's lock,
    so two processes adding one name write it once); a torn last line is ended first, never extended."""
    with file_lock(layout.internal / "trusted_list.lock", "updating trusted_list"):
        if list_name in _read_list(layout):
            return
        with writable(layout.trusted_list):
            fd = os.open(layout.trusted_list, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
                os.write(fd, (("\n" if torn else "") + list_name + "\n").encode())
            finally:
                os.close(fd)
