"""Goldens as text people can review: ``reprohub golden show`` (a git ``textconv``) and ``golden diff``.

A golden is a binary safetensors file, so ``git diff`` shows only ``Bin``.  :func:`show_lines` turns
one into stable text: its metadata (entrypoint, commit, input, torch, device...), then one line per
leaf with its path, dtype, shape, summary statistics and a short digest of its exact bytes, so a
diff says which leaves changed and roughly how, and a change below print precision still shows in
the digest.  The same file always gives the same text, on any machine.

**Without any set-up**, ``--hub-update`` writes a text companion beside each golden
(``logits.safetensors`` -> ``logits.golden.txt``, :func:`write_companion`): the same lines, with the
values themselves for leaves of at most ``SMALL_LEAF`` elements, so a hosted pull request (which
ignores ``textconv``) shows which leaf moved and from what to what.  The binary file stays the record
(exact bits, any size, pinned by the lock), as pytest-regressions keeps arrays in ``.npz`` beside its
text files; syrupy's all-text snapshots would not hold a 100 MB output.

For a local ``git diff`` of the binary files themselves, set up once per clone::

    echo '*.safetensors diff=reprohub-golden' >> .gitattributes
    git config diff.reprohub-golden.textconv 'reprohub golden show --textconv'

Example:
    >>> import torch
    >>> from reprohub.golden.engine import save_golden
    >>> _ = save_golden(tmp + "/g.safetensors", {"logits": torch.tensor([[1.0, -2.0]])}, {"commit": "abc"})
    >>> print("\\n".join(show_lines(tmp + "/g.safetensors")))
    meta commit: abc
    leaf out.logits: float32 [1, 2] min -2 max 1 mean -0.5 std 2.12132 bytes:ee4ac73c2bd2
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping

from ..errors import GoldenFileError
from ..fetch.fsutil import atomic_write_bytes
from ..redact import printable
from .calls import CallRecord, summary, tensor_leaves, tensor_names, text_path as calls_text_path
from .engine import compare_leaves, load_golden
from .pictures import full_index
from .trace import decode


DAMAGED = "DAMAGED golden"  # the first line for a file that is no readable golden (exit 1 from `golden show`)


SMALL_LEAF = 64  # leaves of at most this many elements show their values in the companion


def companion_path(golden: "str | Path") -> Path:
    """The text companion of a golden file: ``k.safetensors`` -> ``k.golden.txt``."""
    golden = Path(golden)
    return golden.with_name(golden.name.removesuffix(".safetensors") + ".golden.txt")


def write_companion(golden: "str | Path", previous: "Mapping[str, Any] | None" = None) -> Path:
    """Write (atomically) the text companion of ``golden``: :func:`show_lines` with small leaves' values and
    larger leaves' slices; with ``previous`` (the leaves it replaces), first how each leaf moved from them.

    Example:
        >>> import torch
        >>> from reprohub.golden.engine import save_golden
        >>> _ = save_golden(tmp + "/c.safetensors", {"y": torch.tensor([0.1, 2.0])}, {})
        >>> print(write_companion(tmp + "/c.safetensors", {"out.y": torch.tensor([0.1, 1.0])}).read_text())
        # reprohub golden c.safetensors: written by --hub-update, review with the golden
        # how it moved from the previous recording (git diff --word-diff shows the numbers that changed):
        moved out.y: 1 of 2 elements, max abs 1 at [1], max rel 1 at [1]
        leaf out.y: float32 [2] min 0.1 max 2 mean 1.05 std 1.3435 bytes:93fc7b7cae0a values 0.100000001 2
        <BLANKLINE>
    """
    path = companion_path(golden)
    lines = [f"# reprohub golden {Path(golden).name}: written by --hub-update, review with the golden"]
    moved = moved_lines(previous, load_golden(golden).leaves) if previous is not None else []
    if moved:
        lines += ["# how it moved from the previous recording (git diff --word-diff shows the numbers that "
                  "changed):", *moved]
    atomic_write_bytes(path, ("\n".join(lines + show_lines(golden, values=True)) + "\n").encode("utf-8"))
    return path


def moved_lines(before: "Mapping[str, Any]", after: "Mapping[str, Any]") -> list[str]:
    """How each leaf of ``after`` moved from ``before``: elements that changed, the greatest absolute and
    relative change with their full index, and the slices along the leading dimensions that changed (a change
    confined to channel 1 of a ``[1, 3, 8, 8]`` output is ``slices [0, 1]``)."""
    import torch

    lines = []
    for key, new in after.items():
        old = before.get(key)
        if not (isinstance(new, torch.Tensor) and isinstance(old, torch.Tensor)):
            if old != new and not isinstance(new, torch.Tensor):
                lines.append(f"moved {key}: {old!r} -> {new!r}")
            continue
        if old.shape != new.shape or old.dtype != new.dtype:
            lines.append(f"moved {key}: {_head(old)} -> {_head(new)}")
            continue
        a, b = old.detach().cpu().to(torch.float64), new.detach().cpu().to(torch.float64)
        changed = ~((a == b) | (torch.isnan(a) & torch.isnan(b)))
        if not bool(changed.any()):
            continue
        diff = torch.nan_to_num((b - a).abs(), nan=float("inf"))
        rel = diff / a.abs().clamp_min(torch.finfo(torch.float64).tiny)
        where = [f"{int(changed.sum())} of {new.numel()} elements"]
        for name, values in (("abs", diff), ("rel", rel)):
            flat = int(values.reshape(-1).argmax())
            where.append(f"max {name} {_g(float(values.reshape(-1)[flat]))} at {full_index(flat, new.shape)}")
        moved = [index for index, part in _slices(changed) if bool(part.any())]
        tail = f"; slices {', '.join(moved)}" if moved and len(moved) < len(_slices(changed)) else ""
        lines.append(f"moved {key}: {', '.join(where)}{tail}")
    return lines


def show_lines(path: "str | Path", values: bool = False) -> list[str]:
    """The text form of one golden file (see the module docstring); no file name, since git hands a
    ``textconv`` the old version as a temporary file.  ``values``: small leaves' values too.

    A file that is no readable golden gives one line saying so (a diff should still show).
    """
    try:
        golden = load_golden(path)
    except GoldenFileError as err:
        return [f"{DAMAGED}: {err.found}"]
    lines = [printable(f"meta {key}: {_meta_value(key, value)}") for key, value in sorted(golden.metadata.items())]
    for key, leaf in golden.leaves.items():
        lines.append(f"leaf {key}: {_describe(leaf)}{_values(leaf) if values else ''}")
        if values and not _values(leaf):  # a larger leaf: a line per slice, so a diff names the one that moved
            lines += [f"  slice {key}{index}: {_describe(part).split(' ', 2)[2]}" for index, part in _slices(leaf)]
    return lines


MAX_SLICES = 64


def _slices(leaf: Any) -> "list[tuple[str, Any]]":
    """A tensor's slices along its leading dimensions, named by their index (``[0, 1]``): rows of a matrix,
    the channels of an image batch (the last two dimensions kept whole); none past ``MAX_SLICES`` or for one."""
    import torch

    if not isinstance(leaf, torch.Tensor) or leaf.dim() < 2:
        return []
    lead = leaf.shape[:1] if leaf.dim() == 2 else leaf.shape[:-2]
    count = int(torch.tensor(lead).prod())
    if not 1 < count <= MAX_SLICES:
        return []
    flat = leaf.reshape(count, -1)
    return [(full_index(n, lead), flat[n]) for n in range(count)]


def _head(leaf: Any) -> str:
    return f"{str(leaf.dtype).removeprefix('torch.')} {list(leaf.shape)}"


def _meta_value(key: str, value: str) -> str:
    """A metadata value as shown: a trace as its size and ends (its numbers are for attribution, not review)."""
    if key != "trace":
        return value
    entries = [e for e in decode(value) if "class" in e]
    if not entries:
        return "(none)"
    return (f"{len(entries)} module calls, {entries[0]['module']} ({entries[0]['class']}) to "
            f"{entries[-1]['module']} ({entries[-1]['class']})")


def diff_text(old: "str | Path", new: "str | Path") -> str:
    """The golden engine's report of how ``new`` differs from ``old`` (empty when they match)."""
    before, after = load_golden(old), load_golden(new)
    result = compare_leaves(after.leaves, before)
    return "" if result.ok else result.message(str(old), before.metadata.get("commit", ""))


def _describe(leaf: Any) -> str:
    import torch

    if not isinstance(leaf, torch.Tensor):
        return f"{type(leaf).__name__} {leaf!r}"
    t = leaf.detach().cpu()
    head = f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}"
    raw = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    digest = f"bytes:{hashlib.sha256(raw).hexdigest()[:12]}"
    if t.numel() == 0:
        return f"{head} empty {digest}"
    if t.dtype == torch.bool:
        return f"{head} true {int(t.sum())} of {t.numel()} {digest}"
    if t.is_complex():
        t = t.abs()
        head += " |z|"
    values = t.to(torch.float64)
    finite = values[torch.isfinite(values)]
    stats = [f"nan {int(torch.isnan(values).sum())}"] if finite.numel() != values.numel() else []
    if finite.numel():
        std = float(finite.std()) if finite.numel() > 1 else 0.0
        stats = [f"min {_g(float(finite.min()))}", f"max {_g(float(finite.max()))}",
                 f"mean {_g(float(finite.mean()))}", f"std {_g(std)}"] + stats
    return f"{head} {' '.join(stats)} {digest}"


def _values(leaf: Any) -> str:
    """`` values 1 -2.5`` for a small tensor leaf (float32 to 9 significant digits: exact, the same on any
    machine), else nothing."""
    import torch

    if not isinstance(leaf, torch.Tensor) or not 0 < leaf.numel() <= SMALL_LEAF or leaf.is_complex():
        return ""
    numbers = leaf.detach().cpu().reshape(-1).tolist()
    return " values " + " ".join(f"{v:.9g}" if isinstance(v, float) else str(v) for v in numbers)


def _g(value: float) -> str:
    return f"{value + 0.0:.6g}"  # + 0.0: -0.0 reads as 0


def calls_text(record: CallRecord) -> str:
    """One line per kept call, for review: ``#0003 2 (Linear) in args[0] float32 [1, 4] ... -> out float32 ...``."""
    lines = [f"# module calls kept with this golden: {len(record.calls)} of {record.total} "
             f"(budget {record.budget >> 20} MiB; REPROHUB_TRACE_BUDGET_MIB), recorded on {record.machine}"]
    made_by: dict[str, int] = {}  # a tensor's name -> the call that returned it first
    briefs: dict[str, str] = {}  # a container returns its last child's tensor: its line is made once

    def brief(name: str) -> str:
        if name not in briefs:
            briefs[name] = _brief(record.tensors[name], record.summaries.get(name))
        return briefs[name]

    for call in record.calls:
        first_in = next(iter(tensor_leaves(call.inputs, record.tensors)), None)
        in_name = next(iter(tensor_names(call.inputs)), "")
        source = made_by.get(in_name)
        if first_in is None:
            shown_in = "no tensor"
        elif source is not None:  # handed on unchanged: where it came from, its numbers are on that line
            shown_in = f"{first_in.lstrip('.')} {_head(record.tensors[in_name])} <- #{source:04d}"
        else:
            shown_in = f"{first_in.lstrip('.')} {brief(in_name)}"
        out_names = tensor_names(call.output)
        shown_out = brief(out_names[0]) if out_names else "no tensor"
        for name in out_names:
            made_by.setdefault(name, call.index)
        mode = "train" if call.training else "eval"
        lines.append(f"#{call.index:04d} {call.label} ({call.cls}, {mode}) in {shown_in} -> out {shown_out}")
    return "\n".join(lines) + "\n"


def _brief(tensor: Any, numbers: Any = None) -> str:
    """``float32 [1, 64, 80, 80] mean 0.0123 absmax 4.56``: enough to see in a diff that a call's tensor moved,
    at a fraction of :func:`_describe`'s cost (no float64 copy, no digest: the record's digest is pinned).
    ``numbers``: its :func:`~reprohub.golden.calls.summary`, where already taken."""
    numbers = summary(tensor) if numbers is None else numbers
    if numbers is None:
        return _head(tensor)
    mean, low, high = numbers.tolist()
    absmax = high if math.isnan(low) or -low <= high else -low  # NaN anywhere reads NaN, as aminmax does
    return f"{_head(tensor)} mean {_g(mean)} absmax {_g(absmax)}"


def write_calls_text(golden: Path, text: str) -> None:
    """Write ``<key>+calls.txt`` (:func:`calls_text`) beside ``golden`` (unflushed, as the record it describes)."""
    atomic_write_bytes(calls_text_path(golden), text.encode(), durable=False)
