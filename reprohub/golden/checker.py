"""The ``golden`` fixture's object: seeded inputs, deterministic mode, checks keyed by the test.

:mod:`reprohub.pytest_plugin` hands one to each test that asks for ``golden``; this module knows no
pytest beyond ``pytest.fail`` for the report.

Example:
    >>> GoldenChecker(None, None).input(2, 3).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from ..errors import ReprohubError
from .store import GoldenStore, check_key


# what the golden fixture sets for a test unless it is set (cuBLAS's deterministic workspace): a golden's
# environment records it, so the session header compares with it too
FIXTURE_ENVIRONMENT = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


class GoldenChecker:
    """The ``golden`` fixture: seeded inputs, deterministic recording, checks keyed by structure.

    Keys default to ``<owner>/<repo>/<entrypoint>/<test module>.<test>[-<params>]``: the model
    of the last ``hub.load`` in the test and the test call itself, so two tests (or two parameter
    sets) of one model never share a golden; ``-2``, ``-3``... name further checks in one test.
    Pass ``key=`` to name a golden yourself.
    """

    def __init__(self, store: GoldenStore, hub: Any, obtained_dir: "Path | Callable[[], Path] | None" = None,
                 nodeid: str = "") -> None:
        self.store = store
        self.hub = hub
        self.obtained_dir = obtained_dir
        self.nodeid = nodeid
        self.inputs: list[str] = []
        self._used: dict[str, int] = {}
        self._trace = None  # the Tracer of the last golden.trace block, for the next check

    def input(self, *shape: int, dtype=None, seed: int = 0, kind: str = "randn", device=None, low: int = 0,
              high: int = 10):
        """A tensor generated from a recorded seed and spec (randn, rand or randint), then moved to ``device``.

        Example:
            >>> GoldenChecker(None, None).input(4, 3, seed=1).shape   # in a test: golden.input(4, 3, seed=1)
            torch.Size([4, 3])
        """
        import torch

        gen = torch.Generator().manual_seed(seed)
        if kind == "randint":
            dtype = dtype or torch.int64
            tensor = torch.randint(low, high, shape, generator=gen, dtype=dtype)
        elif kind in ("randn", "rand"):
            dtype = dtype or torch.float32
            tensor = getattr(torch, kind)(*shape, generator=gen, dtype=dtype)
        else:
            raise ValueError(f"kind must be randn, rand or randint, not {kind!r}")
        self.inputs.append(f"{kind}{tuple(shape)} {str(dtype).removeprefix('torch.')} seed={seed}")
        return tensor if device is None else tensor.to(device)

    def check(self, output, key: str | None = None, rtol: float | None = None, atol: float | None = None,
              tolerances: dict | None = None, equal_nan: bool = False) -> str:
        """Compare ``output`` with its golden (record it under ``--hub-update``).

        Returns "matched", "recorded" or "updated"; raises an AssertionError with the full report otherwise.
        """
        __tracebackhide__ = True
        try:
            key = check_key(key) if key is not None else self._default_key()
            count = self._used[key] = self._used.get(key, 0) + 1
            full_key = key if count == 1 else f"{key}-{count}"
            trace, self._trace = self._trace, None  # a trace belongs to the next check only
            return self.store.check(output, full_key, self._metadata(), dependencies=self._dependencies(),
                                    imports=self._imports(), trace=trace, rtol=rtol, atol=atol,
                                    tolerances=tolerances, equal_nan=equal_nan, obtained_dir=self.obtained_dir)
        except ReprohubError as err:
            message = str(err)
        pytest.fail(message, pytrace=False)  # outside the except: one report, no "During handling of..."

    @contextlib.contextmanager
    def trace(self, model):
        """Fingerprint every submodule's output while the block runs; the next :meth:`check` stores the
        fingerprints with its golden, and when that check fails its report names the first module whose
        output moved (:mod:`reprohub.golden.trace`).

        Example::

            with golden.trace(model):
                out = model(golden.input(1, 3, 32, 32))
            golden.check(out)   # fails with "origin: 2 (Linear)", where the change starts, and a table

        The calls' inputs and outputs are kept beside the golden (``<key>+calls.safetensors``, within
        ``REPROHUB_TRACE_BUDGET_MIB``): on a failure each module is run again on its recorded input, so the
        report names the module whose own output changed (:mod:`reprohub.golden.attribution`).
        """
        from .trace import Tracer

        with Tracer(model, recording=getattr(self.store, "writes", True)) as tracer:
            yield tracer
        self._trace = tracer

    def _metadata(self) -> dict[str, str]:
        repo, load = self.hub.last_repo, self.hub.last_load
        nested = ", ".join(f"{r.spec}@{r.commit}" for r in self.hub.last_nested) if load else ""
        return {
            "entrypoint": f"{load[0]}:{load[1]}" if load else "",
            "commit": repo.commit if repo else "",
            **({"nested": nested} if nested else {}),
            "input": "; ".join(self.inputs),
            "torch": _torch_version(),
        }

    def _dependencies(self) -> tuple[str, ...]:
        """What the loaded repo's ``hubconf.py`` names in ``dependencies`` (its versions join the environment)."""
        import sys

        from ..runtime.hubconf import module_name_for

        repo = self.hub.last_repo
        module = sys.modules.get(module_name_for(repo.path)) if repo is not None else None
        deps = getattr(module, "dependencies", ())
        return tuple(d for d in deps if isinstance(d, str)) if isinstance(deps, (list, tuple)) else ()

    def _imports(self) -> frozenset[str]:
        """The packages the loaded repos' code refers to (the outer load's and its nested loads')."""
        from ..runtime.hubconf import referenced_packages

        repos = [r for r in (self.hub.last_repo, *self.hub.last_nested) if r is not None] if self.hub else []
        return frozenset().union(*(referenced_packages(r.path) for r in repos))

    def _default_key(self) -> str:
        if self.hub.last_load is None:
            raise ReprohubError("a hub.load(...) earlier in the test, or golden.check(..., key='name')",
                                "no load to name the golden after", "pass key=")
        spec, model = self.hub.last_load
        return check_key(f"{spec.partition(':')[0]}/{model}/{test_key(self.nodeid)}")

    @contextlib.contextmanager
    def deterministic(self):
        """Seeds set and deterministic algorithms on (warn-only) for the test; restored afterwards."""
        import torch

        before = (torch.are_deterministic_algorithms_enabled(),
                  torch.is_deterministic_algorithms_warn_only_enabled())
        for name, value in FIXTURE_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        _seed_every_generator(0)
        _set_deterministic(True, warn_only=True)
        try:
            yield
        finally:
            _set_deterministic(*before)


def _seed_every_generator(seed: int) -> None:
    """``torch.manual_seed(seed)``, for less where no accelerator can start: then only the CPU generator exists,
    and torch's call would queue a seed for CUDA, XPU and MTIA each, each capturing the caller's stack for an
    error report that cannot come (about 1 ms a test here, the golden fixture's largest cost)."""
    import torch

    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None and not accelerator.is_available():
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _set_deterministic(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without its import of ``torch._inductor`` (about 2 s per
    process here): the switch itself lives in ``torch._C``; inductor's own copy is set too when a test
    already imported it (``torch.compile``), as torch does."""
    import sys

    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # a torch without the private switch: the public call, imports and all
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = mode
    setter(mode, warn_only=warn_only)


def test_key(nodeid: str) -> str:
    """The part of a golden key that names one test call, stable across runs and machines.

    Example:
        >>> test_key("tests/test_models.py::TestTiny::test_batch[cpu-4]")
        'test_models.TestTiny.test_batch-cpu-4'
    """
    path, _, rest = nodeid.partition("::")
    name, _, params = rest.partition("[")
    stem = Path(path).stem or "test"
    key = f"{stem}.{name.replace('::', '.')}" + (f"-{params.rstrip(']')}" if params else "")
    return re.sub(r"[^A-Za-z0-9_.@=-]", "_", key).lstrip(".") or "test"


def _torch_version() -> str:
    """torch's own version string (importlib.metadata's lookup of it cost ~2 ms per golden check)."""
    import torch

    return torch.__version__
