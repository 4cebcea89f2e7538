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
    >>> with repo_imports("/path/to/repo"):                 # doctest: +SKIP
    ...     module = import_hubconf("/path/to/repo")
    ...     entrypoints(module)
    ['resnet18', 'resnet50']
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

from ..errors import EntrypointError, MissingDependenciesError

MODULE_HUBCONF = "hubconf.py"
VAR_DEPENDENCY = "dependencies"

_stashed: dict[str, dict[str, ModuleType]] = {}
_import_lock = threading.RLock()


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
    return [name for name in list(sys.modules) if name.partition(".")[0] in local]


@contextlib.contextmanager
def repo_imports(repo_dir: "str | os.PathLike[str]") -> Iterator[None]:
    """Run the block with ``repo_dir``'s own packages importable and no one else's under their names.

    ``sys.path`` gets ``repo_dir`` in front for the block only; modules the
    repo defines are put aside afterwards and restored next time.
    """
    repo_dir = os.path.realpath(os.fspath(repo_dir))
    with _import_lock:
        local = _top_level_names(repo_dir)
        shadowed = {name: sys.modules.pop(name) for name in _owned_names(local)}
        sys.modules.update(_stashed.get(repo_dir, {}))
        sys.path.insert(0, repo_dir)
        importlib.invalidate_caches()
        try:
            yield
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(repo_dir)
            _stashed[repo_dir] = {name: sys.modules.pop(name) for name in _owned_names(local)}
            sys.modules.update(shadowed)


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
        raise EntrypointError(f"a {MODULE_HUBCONF} in {repo_dir}", "no such file",
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
