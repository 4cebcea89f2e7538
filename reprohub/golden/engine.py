"""Record and compare nested entrypoint outputs against golden files.

An output -- a tensor, or nested tuples, lists, dicts, namedtuples and
dataclasses of tensors and plain numbers -- is flattened into leaves whose
keys come from the structure (``out.logits``, ``out[1]``, ``out['a b']``), so a
mismatch names the exact leaf.  Goldens are safetensors files (every torch
dtype round-trips: bfloat16, float8, complex, bool, unsigned; dtypes
safetensors lacks are stored as raw bytes) with metadata: the structure,
entrypoint, commit, input description, torch version and device.

Comparison is strict about structure, dtype and shape; values use
``torch.testing.assert_close``'s per-dtype tolerances unless overridden per
call or per leaf; exact equality is checked first.  Large tensors are compared
in chunks, so the extra memory is a few chunk-sized temporaries, not copies of
the output.

Example:
    >>> import torch, tempfile, os
    >>> out = {"logits": torch.ones(2, 3), "n": 3}
    >>> path = os.path.join(tempfile.mkdtemp(), "g.safetensors")
    >>> _ = save_golden(path, out, {"entrypoint": "demo"})
    >>> compare(out, load_golden(path)).ok
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import GoldenFileError, GoldenMismatchError
from ..fetch.fsutil import atomic_write_bytes
from ..redact import printable
from .values import mismatch

METADATA_KEY = "reprohub"
_SAFETENSORS_DTYPES = {
    "float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "int64", "int32", "int16", "int8",
    "uint8", "uint16", "uint32", "uint64", "bool", "complex64",
}


def default_tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol) as ``torch.testing.assert_close`` picks them for ``dtype``; exact for integers and bool.

    Example:
        >>> import torch; default_tolerance(torch.float32)
        (1.3e-06, 1e-05)
    """
    import torch

    table = {
        torch.float16: (1e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-5), torch.float32: (1.3e-6, 1e-5),
        torch.float64: (1e-7, 1e-7), torch.complex32: (1e-3, 1e-5), torch.complex64: (1.3e-6, 1e-5),
        torch.complex128: (1e-7, 1e-7),
    }
    return table.get(dtype, (0.0, 0.0))


# -- flattening --------------------------------------------------------------------------------

def flatten(obj: Any, prefix: str = "out") -> dict[str, Any]:
    """Leaves of a nested output, keyed by their path.

    Example:
        >>> import torch
        >>> sorted(flatten({"a": (torch.ones(1), 2.0)}))
        ['out.a[0]', 'out.a[1]']
    """
    import torch

    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (bool, int, float, complex, str)):
        return {prefix: obj}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return _merge(flatten(getattr(obj, name), f"{prefix}.{name}") for name in obj._fields)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _merge(flatten(getattr(obj, f.name), f"{prefix}.{f.name}") for f in dataclasses.fields(obj))
    if isinstance(obj, Mapping):
        return _merge(flatten(value, prefix + _key_part(key)) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return _merge(flatten(value, f"{prefix}[{i}]") for i, value in enumerate(obj))
    raise GoldenMismatchError("tensors, numbers, strings, None, or tuples/lists/dicts/namedtuples/dataclasses of them",
                              f"{type(obj).__name__} at {prefix}", "convert the output (for example .logits) "
                              "before golden.check")


def _key_part(key: Any) -> str:
    return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


def _merge(parts) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


# -- storage -----------------------------------------------------------------------------------

@dataclass
class Golden:
    """A loaded golden: its leaves, and its metadata (entrypoint, commit, device...)."""

    leaves: dict[str, Any]
    metadata: dict[str, str]
    path: Path | None = None


def save_golden(path: "str | Path", output: Any, metadata: Mapping[str, str] | None = None,
                durable: bool = True) -> bytes:
    """Write ``output`` to a safetensors file atomically (flushed unless ``durable=False``); return the bytes."""
    import torch
    from safetensors.torch import save

    tensors, structure = {}, []
    for key, leaf in flatten(output).items():
        if isinstance(leaf, torch.Tensor):
            tensors[key], entry = _storable(leaf)
            structure.append({"key": key, "kind": "tensor", **entry})
        else:
            structure.append({"key": key, "kind": type(leaf).__name__, "value": _plain(leaf)})
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    # One metadata entry holding sorted JSON: safetensors writes a map's entries in no fixed order,
    # and a golden's bytes (pinned in hub.lock) must not change when its content does not.
    data = save(tensors, metadata={METADATA_KEY: json.dumps({"meta": meta, "structure": structure}, sort_keys=True)})
    atomic_write_bytes(path, data, durable)
    return data


def load_golden(path: "str | Path") -> Golden:
    """Read a golden written by :func:`save_golden`.

    Raises:
        GoldenFileError: the file is damaged or is no golden (named, with the way to re-record it).
    """
    try:
        return _read_golden(path)
    except (OSError, MemoryError):
        raise
    except Exception as err:  # safetensors' own errors, a foreign safetensors file, broken metadata
        raise GoldenFileError(f"a golden file written by reprohub at {path}", f"{type(err).__name__}: {err}",
                              "restore it from version control, or re-record it (`pytest --hub-update` "
                              "overwrites it)") from err


def _read_golden(path: "str | Path") -> Golden:
    import torch
    from safetensors import safe_open

    leaves: dict[str, Any] = {}
    with safe_open(str(path), framework="pt") as f:
        header = json.loads((f.metadata() or {})[METADATA_KEY])
        meta = header["meta"]
        for entry in header["structure"]:
            if entry["kind"] == "tensor":
                raw = f.get_tensor(entry["key"])
                dtype = getattr(torch, entry["dtype"])
                leaves[entry["key"]] = raw if entry.get("raw") is None else raw.view(dtype).reshape(entry["shape"])
            else:
                leaves[entry["key"]] = _unplain(entry["kind"], entry["value"])
    return Golden(leaves, meta, Path(path))


def _storable(t):
    t = t.detach().cpu().contiguous()
    dtype = str(t.dtype).removeprefix("torch.")
    entry = {"dtype": dtype, "shape": list(t.shape)}
    if dtype in _SAFETENSORS_DTYPES:
        return t, entry
    import torch

    return t.reshape(-1).view(torch.uint8), {**entry, "raw": True}


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, complex):
        return [value.real, value.imag]
    return value


def _unplain(kind: str, value):
    if kind == "float":
        return float(value)
    if kind == "complex":
        return complex(*value)
    return value


# -- comparison --------------------------------------------------------------------------------

@dataclass
class LeafDiff:
    """How one leaf differs: a one-line reason and, for values, the detailed report, a one-line summary
    (``max abs 0.5, max rel 0.25, 3 of 4 elements beyond rtol 1.3e-06 / atol 1e-05``) and its numbers."""

    key: str
    reason: str
    detail: str = ""
    summary: str = ""
    max_abs: float = 0.0
    max_rel: float = 0.0


@dataclass
class Comparison:
    """The result of :func:`compare`: ``ok`` and every leaf that differs."""

    diffs: list[LeafDiff] = field(default_factory=list)
    compared: int = 0

    @property
    def ok(self) -> bool:
        return not self.diffs

    def message(self, golden_path: str = "", commit: str = "", accept: str = "") -> str:
        lines = [f"{len(self.diffs)} of {self.compared} leaves differ from the golden"
                 + (f" {golden_path}" if golden_path else "")
                 + (f" (recorded at commit {printable(commit)})" if commit else "")]  # a golden's text, escaped
        for d in self.diffs:
            lines.append(f"  {d.key}: {d.reason}")
            if d.detail:
                lines.extend("    " + line for line in d.detail.splitlines())
        if accept:
            lines.append(f"To accept the new outputs: {accept}")
        return "\n".join(lines)


def compare(obtained: Any, golden: Golden, rtol: float | None = None, atol: float | None = None,
            tolerances: Mapping[str, tuple[float, float]] | None = None, equal_nan: bool = False,
            floor: tuple[float, float] | None = None) -> Comparison:
    """Compare an output with a golden: structure, dtype, shape, then values.

    Args:
        rtol, atol: override the per-dtype defaults for every leaf.
        tolerances: ``{leaf_key: (rtol, atol)}`` overrides for single leaves.
        equal_nan: treat NaN == NaN (off by default).
        floor: (rtol, atol) below which no leaf's tolerance goes; the caller passes one where the output
            comes from another device, environment or machine class than the golden
            (:class:`reprohub.golden.store.GoldenStore` decides which).
    """
    return compare_leaves(flatten(obtained), golden, rtol, atol, tolerances, equal_nan, floor)


def compare_leaves(got: Mapping[str, Any], golden: Golden, rtol: float | None = None, atol: float | None = None,
                   tolerances: Mapping[str, tuple[float, float]] | None = None, equal_nan: bool = False,
                   floor: tuple[float, float] | None = None) -> Comparison:
    """:func:`compare` for leaves already flattened (``{"out.logits": tensor}``; two goldens' leaves)."""
    result = Comparison(compared=len(set(got) | set(golden.leaves)))
    for key in sorted(set(golden.leaves) - set(got)):
        result.diffs.append(LeafDiff(key, "missing from the output (present in the golden)"))
    for key in sorted(set(got) - set(golden.leaves)):
        result.diffs.append(LeafDiff(key, "extra in the output (absent from the golden)"))
    for key in sorted(set(got) & set(golden.leaves)):
        tol = (tolerances or {}).get(key)
        diff = _compare_leaf(key, got[key], golden.leaves[key], tol or (rtol, atol), equal_nan, floor)
        if diff is not None:
            result.diffs.append(diff)
    return result


def _compare_leaf(key, actual, expected, tol, equal_nan, floor) -> LeafDiff | None:
    import torch

    if isinstance(expected, torch.Tensor) != isinstance(actual, torch.Tensor):
        return LeafDiff(key, f"kind differs: golden {type(expected).__name__}, output {type(actual).__name__}")
    if not isinstance(expected, torch.Tensor):
        same = expected == actual or (equal_nan and _both_nan(expected, actual))
        return None if same and type(expected) is type(actual) else LeafDiff(
            key, f"value differs: golden {expected!r} ({type(expected).__name__}), output {actual!r} "
                 f"({type(actual).__name__})")
    if actual.dtype != expected.dtype:
        return LeafDiff(key, f"dtype differs: golden {expected.dtype}, output {actual.dtype}")
    if actual.shape != expected.shape:
        return LeafDiff(key, f"shape differs: golden {tuple(expected.shape)}, output {tuple(actual.shape)}")
    rtol, atol = effective_tolerance(actual.dtype, tol, floor)
    found = mismatch(actual.detach(), expected, rtol, atol, equal_nan)
    if found is None:
        return None
    return LeafDiff(key, "values differ", found.report(actual.shape, rtol, atol), found.summary(rtol, atol),
                    found.max_abs[0], found.max_rel[0])


def _both_nan(a, b) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def effective_tolerance(dtype, tol: "tuple[float | None, float | None]",
                        floor: "tuple[float, float] | None" = None) -> tuple[float, float]:
    """The (rtol, atol) a leaf of ``dtype`` is held to: ``tol``'s values, else the dtype's defaults, raised to
    ``floor`` where one is given.

    Example:
        >>> import torch; effective_tolerance(torch.float32, (None, 1e-3), (1e-4, 1e-5))
        (0.0001, 0.001)
    """
    default_rtol, default_atol = default_tolerance(dtype)
    rtol = default_rtol if tol[0] is None else tol[0]
    atol = default_atol if tol[1] is None else tol[1]
    if floor is not None:
        rtol, atol = max(rtol, floor[0]), max(atol, floor[1])
    return rtol, atol


def assert_matches(obtained: Any, golden: Golden, **kwargs) -> None:
    """Raise :class:`~reprohub.errors.GoldenMismatchError` with the full report if ``obtained`` differs.

    Example:
        >>> import torch
        >>> g = Golden({"out": torch.zeros(3)}, {})
        >>> assert_matches(torch.zeros(3), g)
    """
    result = compare(obtained, golden, **kwargs)
    if not result.ok:
        where = str(golden.path) if golden.path else "the golden"
        raise GoldenMismatchError(f"outputs matching {where}", result.message(
            str(golden.path or ""), golden.metadata.get("commit", "")), "re-record with `pytest --hub-update` "
            "if the change is intended")
