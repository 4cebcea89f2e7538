"""Import a repo's ``hubconf.py`` in isolation, list and check its entrypoints.

torch.hub imports every hubconf with the repo at the front of ``sys.path`` and
leaves its packages in ``sys.modules``: the second repo that ships a top-level
``models`` or ``utils`` then gets the first repo's (pytorch/hub#243).  Here,
while a repo's code runs, ``sys.modules`` holds that repo's own modules and
nothing else under the same top-level names; afterwards they are put aside
(and restored on the next call into the same repo) and whatever they shadowed
comes back.  The hubconf itself gets a module name unique to its folder, so
two commits of one repo never share one.

Example:
    >>> with repo_imports(server.repo_path):
    ...     entrypoints(import_hubconf(server.repo_path))
    ['tiny_mlp']
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.util
import os
import sys
import threading
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

from ..errors import EntrypointError, HubconfMissingError, MissingDependenciesError

MODULE_HUBCONF = "hubconf.py"
VAR_DEPENDENCY = "dependencies"

_stashed: dict[str, dict[str, ModuleType]] = {}  # repo folder -> its modules while it is not active
_cond = threading.Condition(threading.RLock())
_users: dict[str, Counter] = {}  # active repo folder -> {thread id: nesting depth}
_owner: dict[str, str] = {}  # top-level module name -> the active repo folder that owns it
_activations: dict[str, tuple[dict[str, ModuleType], dict[str, str]]] = {}  # folder -> (shadowed, previous owners)


def _top_level_names(repo_dir: str) -> set[str]:
    """Modules and regular packages (folders with ``__init__.py``) at the top of a repo.

    Plain folders (``docs/``, ``assets/``) are left out, so they never hide installed packages.
    """
    names = set()
    with os.scandir(repo_dir) as entries:
        for entry in entries:
            if entry.name.endswith(".py") and entry.is_file():
                names.add(entry.name[:-3])
            elif entry.is_dir() and os.path.isfile(os.path.join(entry.path, "__init__.py")):
                names.add(entry.name)
    names.discard("hubconf")
    return {name for name in names if name.isidentifier()}


def _owned_names(local: set[str]) -> list[str]:
    """The loaded modules under the repo's top-level names (a submodule is only loaded with its parent,
    so when no top-level name is loaded the scan of ``sys.modules``, thousands of names with torch, is skipped)."""
    if not any(name in sys.modules for name in local):
        return []
    return [name for name in list(sys.modules) if name.partition(".")[0] in local]


@contextlib.contextmanager
def repo_imports(repo_dir: "str | os.PathLike[str]") -> Iterator[None]:
    """Run the block with ``repo_dir``'s own packages importable and no one else's under their names.

    Threads running the same repo share its activation and run at once; a repo
    whose top-level names clash with one active in *another* thread waits for it
    (one ``models`` package at a time), while a nested load in the same thread
    swaps the names and swaps them back.  ``sys.path`` holds ``repo_dir`` while
    the repo is active; afterwards its modules are put aside (and stay reachable
    for pickle through :class:`_StashFinder`) and whatever they shadowed comes back.
    """
    repo_dir = os.path.realpath(os.fspath(repo_dir))
    local = _top_level_names(repo_dir)
    me = threading.get_ident()
    with _cond:
        _cond.wait_for(lambda: _free_for(repo_dir, local, me))
        users = _users.setdefault(repo_dir, Counter())
        if not users:
            _activate(repo_dir, local)
        users[me] += 1
    try:
        yield
    finally:
        with _cond:
            users[me] -= 1
            if users[me] == 0:
                del users[me]
            if not users:
                del _users[repo_dir]
                _deactivate(repo_dir, local)
            _cond.notify_all()


def _free_for(repo_dir: str, local: set[str], me: int) -> bool:
    """No other repo owns these names, or only this thread is using it (a nested load)."""
    owners = {_owner[name] for name in local if _owner.get(name, repo_dir) != repo_dir}
    return all(set(_users.get(owner, ())) <= {me} for owner in owners)


def _activate(repo_dir: str, local: set[str]) -> None:
    shadowed = {name: sys.modules.pop(name) for name in _owned_names(local)}
    previous = {name: _owner[name] for name in local if name in _owner}
    sys.modules.update(_stashed.pop(repo_dir, {}))
    _owner.update(dict.fromkeys(local, repo_dir))
    _activations[repo_dir] = (shadowed, previous)
    sys.path.insert(0, repo_dir)
    sys.path_importer_cache.pop(repo_dir, None)  # a finder made before a re-extraction must list the folder anew


def _deactivate(repo_dir: str, local: set[str]) -> None:
    shadowed, previous = _activations.pop(repo_dir)
    with contextlib.suppress(ValueError):
        sys.path.remove(repo_dir)
    _stashed[repo_dir] = {name: sys.modules.pop(name) for name in _owned_names(local)}
    sys.modules.update(shadowed)
    for name in local:
        _owner.pop(name, None)
    _owner.update(previous)


class _StashFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Modules of repos that are not active now, reachable by name (for ``pickle`` and ``torch.save``).

    Pickling an object whose class comes from a repo looks its module up by name after the load
    returned; this hands back the very module object (so the class is the same one), most recently
    used repo first.  Two instances: the last finder on ``sys.meta_path`` answers top-level names,
    so installed packages always win; the first answers submodules of a package it handed out (else
    the path finder would execute ``pkg/mod.py`` a second time, making a different class).
    """

    def __init__(self, submodules: bool) -> None:
        self.submodules = submodules

    def find_spec(self, fullname, path=None, target=None):
        parent, dot, _ = fullname.rpartition(".")
        if bool(dot) != self.submodules:
            return None
        with _cond:
            for modules in reversed(list(_stashed.values())):
                module = modules.get(fullname)
                if module is not None and (not dot or sys.modules.get(parent) is modules.get(parent)):
                    original = getattr(module, "__spec__", None)
                    spec = importlib.util.spec_from_loader(fullname, self, origin=getattr(original, "origin", None),
                                                           is_package=hasattr(module, "__path__"))
                    spec.loader_state = module
                    return spec
        return None

    def create_module(self, spec):
        return spec.loader_state

    def exec_module(self, module):
        """Already executed when the repo ran."""


if not any(isinstance(finder, _StashFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _StashFinder(submodules=True))
    sys.meta_path.append(_StashFinder(submodules=False))


def forget_repo(repo_dir: "str | os.PathLike[str]") -> None:
    """Drop what was imported from ``repo_dir`` (its files are about to be replaced)."""
    repo_dir = os.path.realpath(os.fspath(repo_dir))
    with _cond:
        sys.modules.pop(module_name_for(repo_dir), None)
        _stashed.pop(repo_dir, None)


def module_name_for(repo_dir: "str | os.PathLike[str]") -> str:
    """The unique ``sys.modules`` name a repo's hubconf is imported under."""
    digest = hashlib.sha256(os.path.realpath(os.fspath(repo_dir)).encode("utf-8", "surrogateescape")).hexdigest()
    return f"reprohub_hubconf_{digest[:16]}"


def import_hubconf(repo_dir: "str | os.PathLike[str]", reuse: bool = False) -> ModuleType:
    """Import ``repo_dir/hubconf.py`` (call inside :func:`repo_imports`).

    Args:
        reuse: return the module already imported for this folder, if any
            (right for immutable commit folders; a local folder is re-read).

    Raises:
        EntrypointError: there is no ``hubconf.py`` in ``repo_dir``.
    """
    path = Path(repo_dir) / MODULE_HUBCONF
    name = module_name_for(repo_dir)
    if reuse and name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise HubconfMissingError(f"a {MODULE_HUBCONF} in {repo_dir}", "no such file",
                              "check the repo and ref: only repos that publish hubconf.py can be loaded")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def entrypoints(module: ModuleType) -> list[str]:
    """Public callables of a hubconf, sorted, as ``torch.hub.list`` returns them."""
    return [name for name in dir(module) if callable(getattr(module, name)) and not name.startswith("_")]


def missing_dependencies(module: ModuleType) -> list[str]:
    """The packages in ``module.dependencies`` that cannot be imported."""
    missing = []
    for package in getattr(module, VAR_DEPENDENCY, None) or ():
        try:
            found = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(package)
    return missing


def get_entrypoint(module: ModuleType, model: str) -> Callable:
    """The callable ``model`` of a hubconf, after checking its dependencies.

    Raises:
        MissingDependenciesError: naming every missing package (a ``RuntimeError``, as in torch.hub).
        EntrypointError: ``model`` is not a callable of the hubconf (a ``RuntimeError``).
    """
    if not isinstance(model, str):
        raise EntrypointError("an entrypoint name (str)", f"{type(model).__name__} {model!r}",
                              "pass the name of a function in hubconf.py")
    missing = missing_dependencies(module)
    if missing:
        raise MissingDependenciesError(
            "every package in hubconf.dependencies installed",
            f"Missing dependencies: {', '.join(missing)}",
            f"pip install {' '.join(missing)}",
            missing=tuple(missing),
        )
    func = getattr(module, model, None) if model in dir(module) else None
    if func is None or not callable(func):
        available = ", ".join(entrypoints(module)) or "none"
        raise EntrypointError(f"a callable {model!r} in hubconf", f"Cannot find callable {model} in hubconf "
                              f"(entrypoints: {available})", "check the name with reprohub.list(...)")
    return func


def referenced_packages(repo_dir: "str | os.PathLike[str]") -> frozenset[str]:
    """Top-level names of the packages a repo's code refers to: every module object, and the module of every
    class or function, in the globals of its ``hubconf.py`` and its own modules (``import pandas as pd``,
    ``from PIL import Image``, ``from ultralytics.utils import LOGGER``).  It reads the code's namespace, not
    what happened to be imported first in this process, so it is the same in any run; an import made
    inside a function that has not run is not seen.  The repo's own names are left out.

    Example:
        >>> import pathlib; repo = pathlib.Path(tmp, "refs"); repo.mkdir()
        >>> _ = (repo / "hubconf.py").write_text("import numpy as np\\nfrom json import dumps\\n")
        >>> with repo_imports(repo):
        ...     _ = import_hubconf(repo)
        >>> sorted(referenced_packages(repo))
        ['json', 'numpy']
    """
    repo_dir = os.path.realpath(os.fspath(repo_dir))
    with _cond:
        own = dict(_stashed.get(repo_dir, {}))
        tops = tuple(top for top, owner in _owner.items() if owner == repo_dir)
        # str.startswith over a tuple runs in C: the scan of sys.modules (thousands with torch) is a tenth of a
        # Python-level test per name, which cost ~1 ms a golden check; the exact top is checked on the few found
        own.update({n: m for n, m in sys.modules.items()
                    if n.startswith(tops) and n.partition(".")[0] in tops} if tops else {})
    hubconf = sys.modules.get(module_name_for(repo_dir))
    modules = [m for m in (*own.values(), hubconf) if isinstance(m, ModuleType)]
    local = {name.partition(".")[0] for name in own}
    found = set()
    for module in modules:
        for key, value in list(vars(module).items()):
            if key.startswith("__"):  # the module's own machinery (__loader__, __spec__, __builtins__)
                continue
            try:  # an object's own __getattr__ may raise anything
                name = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
            except Exception:  # noqa: BLE001
                continue
            if isinstance(name, str) and name and not name.startswith("reprohub_hubconf_"):
                found.add(name.partition(".")[0])
    return frozenset(found - local)

