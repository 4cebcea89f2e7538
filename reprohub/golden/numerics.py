"""The numeric stack of this machine: what picks the kernels, and so the output bits, beside the versions.

Same Python, same torch, another CPU: torch dispatches its CPU kernels by the instruction set it
finds (``torch.backends.cpu.get_cpu_capability()``, forced by ``ATEN_CPU_CAPABILITY``), and the BLAS,
LAPACK and oneDNN builds, the thread count and the precision switches change results too.
:func:`numeric_stack` reports all of it as plain strings that compare across machines:

* ``cpu``: vendor and model as the OS reports them (``/proc/cpuinfo``, else ``platform``);
* ``cpu capability`` and, when set, ``ATEN_CPU_CAPABILITY``;
* ``blas``, ``lapack``, ``mkl``, ``onednn``: the builds ``torch.__config__`` names;
* ``fp32 precision <backend>``: every ``fp32_precision`` switch this torch has (2.9 and newer), and
  ``fp16/bf16 reduced precision reduction``;
* ``CUBLAS_WORKSPACE_CONFIG``, ``NVIDIA_TF32_OVERRIDE``: as set, or ``unset``;
* on CUDA, ``cuda driver`` and ``cuda runtime`` (the device's name and capability are the ``device``).

What cannot change while a process runs (the CPU, the builds) is read once; the switches, each time.
:func:`machine_class` names the class a golden variant belongs to: ``cpu-avx2``, ``cuda-sm_90``.

Example:
    >>> stack = numeric_stack("cpu")
    >>> stack["cpu capability"] == __import__("torch").backends.cpu.get_cpu_capability()
    True
    >>> machine_class({"device": "cpu", "cpu capability": "AVX2"}), machine_class({"device": "cuda (H200, sm_90)"})
    ('cpu-avx2', 'cuda-sm_90')
"""

from __future__ import annotations

import functools
import platform
import re
from typing import Mapping

from .. import settings

UNSET = "unset"
PRECISION_VARIABLES = (settings.CUBLAS_WORKSPACE_CONFIG, settings.NVIDIA_TF32_OVERRIDE)
# the backends whose fp32_precision torch 2.9+ exposes (each is read only where this torch has it)
PRECISION_SWITCHES = ("", "cuda.matmul", "cudnn", "cudnn.conv", "cudnn.rnn", "mkldnn", "mkldnn.matmul",
                      "mkldnn.conv", "mkldnn.rnn")


def numeric_stack(device: str = "cpu") -> dict[str, str]:
    """The kernels, builds and precision switches behind an output computed on ``device`` (see the module)."""
    stack = dict(_machine())
    forced = settings.read(settings.ATEN_CPU_CAPABILITY)  # read now: a cached value would outlive the setting
    if forced:
        stack["ATEN_CPU_CAPABILITY"] = forced
    stack.update(_switches())
    if device.startswith("cuda"):
        stack.update(_cuda())
    return stack


@functools.lru_cache(maxsize=1)
def _machine() -> "tuple[tuple[str, str], ...]":
    import torch

    found = {"cpu": cpu_model(), "cpu capability": torch.backends.cpu.get_cpu_capability()}
    found.update(_builds(torch.__config__.show()))
    return tuple(sorted(found.items()))


def cpu_model() -> str:
    """``vendor model`` as the OS reports it (``AuthenticAMD AMD EPYC 9654 96-Core Processor``)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            pairs = (line.split(":", 1) for line in info.read(1 << 16).splitlines() if ":" in line)
            fields = {key.strip(): value.strip() for key, value in pairs}
        found = " ".join(fields.get(k, "") for k in ("vendor_id", "model name")).strip()
        if found:
            return found
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _builds(config: str) -> dict[str, str]:
    """BLAS, LAPACK, MKL and oneDNN as ``torch.__config__.show()`` names them."""
    found = {}
    for name, pattern in (("blas", r"BLAS_INFO=([^,\s]+)"), ("lapack", r"LAPACK_INFO=([^,\s]+)"),
                          ("mkl", r"Math Kernel Library Version ([^\s-]+)"), ("onednn", r"MKL-DNN (v[\d.]+)")):
        match = re.search(pattern, config)
        found[name] = match.group(1) if match else "none"
    return found


def _switches() -> dict[str, str]:
    import torch

    found = {}
    for path in PRECISION_SWITCHES:
        backend = functools.reduce(lambda obj, part: getattr(obj, part, None), path.split(".") if path else [],
                                   torch.backends)
        value = getattr(backend, "fp32_precision", None) if backend is not None else None
        if isinstance(value, str):
            found[f"fp32 precision {path or 'default'}"] = value
    matmul = torch.backends.cuda.matmul
    for kind in ("fp16", "bf16"):
        value = getattr(matmul, f"allow_{kind}_reduced_precision_reduction", None)
        if value is not None:
            found[f"{kind} reduced precision reduction"] = str(value)
    for name in PRECISION_VARIABLES:
        found[name] = settings.read(name) or UNSET
    return found


@functools.lru_cache(maxsize=1)
def _cuda() -> "dict[str, str]":
    """The CUDA runtime torch was built with and the driver's version (none without a GPU); read once."""
    import torch

    if not torch.cuda.is_available():
        return {}
    driver = getattr(torch._C, "_cuda_getDriverVersion", None)
    try:
        version = driver() if driver is not None else None
    except RuntimeError:
        version = None
    found = {"cuda runtime": str(torch.version.cuda or UNSET)}
    if isinstance(version, int) and version > 0:
        found["cuda driver"] = f"{version // 1000}.{version % 1000 // 10}"
    return found


def machine_class(env: Mapping[str, str]) -> str:
    """The class of machine whose outputs share bits: the device type and, on CPU, the kernel capability
    (``cpu-avx512``); on CUDA the compute capability (``cuda-sm_90``).  Recorded environments without a
    capability are ``cpu``."""
    device = env.get("device", "cpu")
    if device.startswith("cuda"):
        match = re.search(r"sm_\d+", device)
        return f"cuda-{match.group()}" if match else "cuda"
    capability = env.get("cpu capability", "")
    return f"cpu-{capability.lower()}" if re.fullmatch(r"[A-Za-z0-9_]+", capability) else "cpu"
