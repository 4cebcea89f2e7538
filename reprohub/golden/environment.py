"""The environment a golden was recorded in: part of the record, so a mismatch can say what moved.

Outputs depend on the stack as much as on the commit.  :func:`capture` records, as plain strings:
Python, the OS and machine architecture, torch (version and build: CUDA and cuDNN, or CPU), numpy,
the device (``cpu``, or the GPU's name and compute capability), the numerics switches that change
results (deterministic algorithms, TF32 for matmul and cuDNN, float32 matmul precision, torch's
thread count), the numeric stack of the machine (:mod:`reprohub.golden.numerics`: the CPU, the
kernel capability torch dispatches to, BLAS/LAPACK/MKL/oneDNN builds, every precision switch, the CUDA
driver and runtime), the installed version of every package the repo's ``hubconf.py`` names in
``dependencies`` (``dep <name>``; ``not installed`` where no distribution has that name), and of every
distribution the repo's code refers to (``import <name>``: yolov5 names none of pandas or opencv in
``dependencies``).  No timestamps, host names or paths: the same environment gives the same
record, and its :func:`environment_id` (a digest of it) lets many goldens share one entry of ``hub.lock``.

Example:
    >>> env = capture(["numpy"], "cpu")
    >>> env["device"], env["dep numpy"] == env["numpy"], len(environment_id(env)), "cpu capability" in env
    ('cpu', True, 16, True)
    >>> differences({"torch": "2.13.0", "cpu capability": "AVX2"}, {"torch": "2.14.1", "cpu capability": "DEFAULT"})
    ['cpu capability AVX2 -> DEFAULT', 'torch 2.13.0 -> 2.14.1']
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import sys
from importlib import metadata
from typing import Iterable, Mapping

from ..errors import LockfileError
from .owners import module_owners
from ..redact import printable
from .numerics import numeric_stack

NOT_INSTALLED = "not installed"
# dependency names as pip writes them (PEP 508 names); anything else is recorded as it is, quoted
_DIST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_RECORDED_APART = ("torch", "numpy")  # versions with fields of their own
# fields a record may lack because an older reprohub wrote it: compared only where both sides have them
_PACKAGE_PREFIXES = ("dep ", "import ")


def capture(dependencies: Iterable[str] = (), device: str = "cpu",
            versions: "dict[str, str] | None" = None, imports: Iterable[str] = ()) -> dict[str, str]:
    """The environment of this process for an output computed on ``device``, as sorted plain strings.

    ``versions``: a cache of installed versions to fill and reuse (a pytest session passes one, so a
    suite looks each distribution up once: about 0.9 ms a lookup here, per golden check otherwise).
    ``imports``: top-level names of the packages the loaded repo's code refers to
    (:func:`reprohub.runtime.hubconf.referenced_packages`), recorded by distribution.
    """
    import torch

    def version(name: str) -> str:
        if versions is None:
            return _version(name)
        if name not in versions:
            versions[name] = _version(name)
        return versions[name]

    env = {
        "python": platform.python_version(),
        "os": platform.system(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "torch build": _torch_build(torch),
        "numpy": version("numpy"),
        "device": _device(torch, device),
        "deterministic algorithms": str(torch.are_deterministic_algorithms_enabled()),
        "tf32 matmul": str(torch.backends.cuda.matmul.allow_tf32),
        "tf32 cudnn": str(torch.backends.cudnn.allow_tf32),
        "float32 matmul precision": torch.get_float32_matmul_precision(),
        "threads": str(torch.get_num_threads()),
        **numeric_stack(device),
    }
    named = set()
    for name in dependencies:
        if isinstance(name, str) and name.strip():
            env[f"dep {name.strip()}"] = version(name.strip())
            named.add(name.strip().lower())
    for dist in imported_distributions(imports):
        if dist.lower() not in named and dist.lower() not in _RECORDED_APART:
            env[f"import {dist}"] = version(dist)
    return dict(sorted(env.items()))


def imported_distributions(modules: Iterable[str]) -> list[str]:
    """The installed distributions that provide these top-level modules (``cv2`` -> ``opencv-python``);
    the standard library and modules of no distribution (the repo's own) are left out."""
    owners = module_owners()
    found = set()
    for module in modules:
        top = module.partition(".")[0]
        if top and top not in sys.stdlib_module_names:
            found.update(owners.get(top, ()))
    return sorted(found)


def _version(name: str) -> str:
    if not _DIST_NAME.fullmatch(name):
        return NOT_INSTALLED + " (not a distribution name)"
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _torch_build(torch) -> str:
    cuda = torch.version.cuda
    if not cuda:
        return "cpu"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return f"cuda {cuda}" + (f", cudnn {cudnn}" if cudnn else "")


def _device(torch, device: str) -> str:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return device
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return f"cuda ({torch.cuda.get_device_name(index)}, sm_{major}{minor})"


def environment_id(env: Mapping[str, str]) -> str:
    """A short, stable digest naming one environment (the key of its ``hub.lock`` entry)."""
    return hashlib.sha256(json.dumps(dict(env), sort_keys=True).encode()).hexdigest()[:16]


def differences(recorded: Mapping[str, str], current: Mapping[str, str]) -> list[str]:
    """``key old -> new`` for every field that differs.  A package only one side has counts as ``(none)``;
    another field the record lacks is one an older reprohub did not record, and is not compared."""
    keys = sorted(k for k in set(recorded) | set(current) if k in recorded or k.startswith(_PACKAGE_PREFIXES))
    return [printable(f"{k} {recorded.get(k, '(none)')} -> {current.get(k, '(none)')}") for k in keys
            if recorded.get(k) != current.get(k)]  # lock text, shown escaped (reprohub.redact.printable)


PYTORCH_INDEX = "https://download.pytorch.org/whl/"
# local build tags PyTorch's own index serves (torch, torchvision, torchaudio): cpu, cu121, rocm6.2, xpu
_PYTORCH_LOCAL = re.compile(r"cpu|cu\d{2,3}|rocm\d+(\.\d+)*|xpu")
_PYTORCH_DISTS = frozenset({"torch", "torchvision", "torchaudio"})


def requirements(envs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """pip requirement lines rebuilding the recorded stack: torch, numpy, each installed dependency and
    each distribution a load imported.  A PyTorch build tag (``+cpu``, ``+cu121``) is kept, with the
    ``--extra-index-url`` line of PyTorch's index that serves it (made here, from a checked tag).

    ``envs``: environment id -> its recorded values (the lock's ``[environments]``).  Each name and version
    comes from the lock, which a pull request can edit, and the lines go to ``pip install -r``: a version
    must be a PEP 440 version and a name a distribution name, or nothing is printed.

    Raises:
        LockfileError: a value that is no version (``"1.0\\n--index-url ..."``), naming its entry.

    Example:
        >>> requirements({"e1": {"torch": "2.13.0+cpu", "numpy": "2.4.6", "dep timm": "1.0.3",
        ...                      "import pandas": "2.2.3", "dep models": "not installed"}})
        ['--extra-index-url https://download.pytorch.org/whl/cpu', 'numpy==2.4.6', 'pandas==2.2.3', 'timm==1.0.3', 'torch==2.13.0+cpu']
        >>> requirements({"e1": {"numpy": "2.4.6 --extra-index-url http://evil/simple"}})
        Traceback (most recent call last):
        ...
        reprohub.errors.LockfileError: expected a PEP 440 version for numpy, found '2.4.6 --extra-index-url http://evil/simple' in [environments.e1] values.numpy. Fix: restore the entry from version control, or re-record it with --hub-update; nothing was printed
    """
    pins: dict[str, str] = {}
    indexes: set[str] = set()
    for env_id, env in sorted(envs.items()):
        for key, value in sorted(env.items()):
            name = key if key in _RECORDED_APART else (key.split(" ", 1)[1] if key.startswith(_PACKAGE_PREFIXES)
                                                       else None)
            if name and _DIST_NAME.fullmatch(name) and not value.startswith(NOT_INSTALLED) and name.lower() not in pins:
                pins[name.lower()], index = _release(name, value, f"[environments.{env_id}] values.{key}")
                indexes.update([index] if index else [])
    return sorted(f"--extra-index-url {PYTORCH_INDEX}{tag}" for tag in indexes) + sorted(
        f"{name}=={version}" for name, version in pins.items())


def _release(name: str, value: str, where: str) -> "tuple[str, str | None]":
    """``value`` as the version pip can find, and the PyTorch index tag that serves it (or None): a local
    build tag is kept only for PyTorch's own builds, which its index serves; any other is no PyPI version."""
    from packaging.version import InvalidVersion, Version

    try:
        version = Version(value)
    except InvalidVersion:
        raise LockfileError(f"a PEP 440 version for {name}", f"{value!r} in {where}",
                            "restore the entry from version control, or re-record it with --hub-update; "
                            "nothing was printed") from None
    local = version.local or ""
    if name.lower() in _PYTORCH_DISTS and _PYTORCH_LOCAL.fullmatch(local):
        return f"{version.public}+{local}", local
    return version.public, None
