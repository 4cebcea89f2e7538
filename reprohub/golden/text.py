"""Goldens as text people can review: ``reprohub golden show`` (a git ``textconv``) and ``golden diff``.

A golden is a binary safetensors file, so ``git diff`` shows only ``Bin``.  :func:`show_lines` turns
one into stable text: its metadata (entrypoint, commit, input, torch, device...), then one line per
leaf with its path, dtype, shape, summary statistics and a short digest of its exact bytes, so a
diff says which leaves changed and roughly how, and a change below print precision still shows in
the digest.  The same file always gives the same text, on any machine.

Set up once per clone (the README's "Reviewing goldens in a diff")::

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
from pathlib import Path
from typing import Any

from ..errors import GoldenFileError
from ..redact import printable
from .engine import compare_leaves, load_golden
from .trace import decode


DAMAGED = "DAMAGED golden"  # the first line for a file that is no readable golden (exit 1 from `golden show`)


def show_lines(path: "str | Path") -> list[str]:
    """The text form of one golden file (see the module docstring); no file name, since git hands a
    ``textconv`` the old version as a temporary file.

    A file that is no readable golden gives one line saying so (a diff should still show).
    """
    try:
        golden = load_golden(path)
    except GoldenFileError as err:
        return [f"{DAMAGED}: {err.found}"]
    lines = [printable(f"meta {key}: {_meta_value(key, value)}") for key, value in sorted(golden.metadata.items())]
    lines += [f"leaf {key}: {_describe(leaf)}" for key, leaf in golden.leaves.items()]
    return lines


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


def _g(value: float) -> str:
    return f"{value + 0.0:.6g}"  # + 0.0: -0.0 reads as 0
