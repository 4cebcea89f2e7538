"""Where a change starts, not where it first shows: each kept module call run again on its *recorded* input.

A traced golden keeps every module call's inputs and outputs (:mod:`reprohub.golden.calls`).  When its
check fails, each kept call's module (the same object, under ``torch.no_grad``, in the mode it was
recorded in) is run on a fresh, contiguous copy of its recorded input, and two errors are measured, as
the largest absolute difference and relative to the recorded tensor's largest magnitude:

* **local**: its output now against its recorded output -- the error the module adds itself;
* **inherited**: the input it got in this run against its recorded input -- the error it was handed.

**Noise floor.** A module *adds* when its local error exceeds one unit in the last place at its output's
scale (``finfo(dtype).eps x max|recorded output|``; exact for integer outputs).  On the machine a golden
was recorded on, replay is exact (0 everywhere but where something changed), so one ulp only absorbs a
kernel that is not bitwise deterministic; a 1e-6 change of a bias in float32 is ~8 ulp at scale 1.

**The origin** is the first call, in call order, that adds -- except a container (a ``Sequential``, a
block) whose traced children include one that adds: its verdict is ``contains`` and the child is blamed.
When no module adds, the change came in with the input (``origin: none (drift from the input)``).  On a
machine of another class (CPU capability, GPU) every module adds a little: there the calls that add are
ranked by relative local error, and unless the largest is ten times the next the report shows the top
three and says why instead of naming one.

Example:
    >>> import torch
    >>> from reprohub.golden.calls import CallCapture, CallRecord
    >>> torch.manual_seed(0); net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    <torch._C.Generator object at ...>
    >>> capture = CallCapture(1 << 20); hooks = capture.attach(net); _ = net(torch.ones(1, 3))
    >>> capture.detach(hooks)
    >>> record = CallRecord(capture.kept(), capture.tensors, "cpu-avx2", len(capture.calls), 1 << 20)
    >>> with torch.no_grad():
    ...     net[0].bias += 1e-3
    >>> attribute(record, net, None, "cpu-avx2").origin
    '0 (Linear)'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .calls import Call, CallCapture, CallRecord, NotReplayable, buffers_kept, recorded_mode, tensor_leaves, unpack

MAX_ROWS = 16
STANDS_OUT = 10.0  # on another machine class, one call is named only when it adds ten times the next


@dataclass
class Row:
    """One call's errors (``None``: not measured) and verdict: adds, inherits, same, contains, or not replayed."""

    label: str
    cls: str
    local: "float | None" = None
    local_rel: "float | None" = None
    inherited: "float | None" = None
    inherited_rel: "float | None" = None
    verdict: str = "same"
    floor: float = 0.0
    parent: "int | None" = None
    index: int = 0

    def as_dict(self) -> dict:
        """JSON-safe: an infinite error (a shape that changed) is the string ``"inf"``."""
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
                for k, v in ((k, getattr(self, k)) for k in ("label", "cls", "local", "local_rel", "inherited",
                                                             "inherited_rel", "verdict"))}


@dataclass
class Attribution:
    """The verdict: ``origin`` (``"2 (Linear)"``, ``"none"`` or ``"unclear"``), why, and every kept call's row."""

    origin: str
    why: str
    rows: list[Row] = field(default_factory=list)
    kept: int = 0
    total: int = 0

    def as_dict(self) -> dict:
        """JSON-able: for the ``--hub-report`` page (a bar per call) and the job summary."""
        return {"origin": self.origin, "why": self.why, "kept": self.kept, "total": self.total,
                "rows": [row.as_dict() for row in self.rows]}

    def text(self) -> str:
        """The report: ``origin: ...`` first, then why, then a table of the calls worth reading."""
        lines = [f"origin: {self.origin}", f"  {self.why}"]
        shown = [r for r in self.rows if r.verdict != "same"][:MAX_ROWS] or self.rows[:MAX_ROWS]
        lines.append(f"  {'module':<24}  {'class':<16}  {'local':<24}  {'inherited':<24}  verdict")
        for row in shown:
            lines.append(f"  {row.label[:24]:<24}  {row.cls[:16]:<16}  {_error(row.local, row.local_rel):<24}  "
                         f"{_error(row.inherited, row.inherited_rel):<24}  {row.verdict}")
        same = len(self.rows) - len(shown)
        if same:
            lines.append(f"  ({same} more calls not shown: `reprohub golden trace` lists every kept call)")
        if self.kept < self.total:
            lines.append(f"  {self.total - self.kept} of {self.total} calls were not kept within the trace budget "
                         f"(REPROHUB_TRACE_BUDGET_MIB): they are not attributed")
        return "\n".join(lines)


def attribute(record: CallRecord, model: Any, current: "CallCapture | None", machine: str) -> Attribution:
    """Measure every kept call of ``record`` on ``model`` and name where the change starts (module docstring).
    ``current``: every call of this run (``None``: inherited errors unknown, shown as ``-``)."""
    now = {(c.module, c.number): c for c in current.calls} if current is not None else {}
    with buffers_kept(model):
        rows = [_measure(call, record, model, now.get((call.module, call.number)), current) for call in record.calls]
    _mark_containers(rows)
    adders = [row for row in rows if row.verdict == "adds"]
    result = _origin(rows, adders, record.machine, machine)
    result.rows, result.kept, result.total = rows, len(record.calls), record.total
    return result


def _origin(rows: list[Row], adders: list[Row], recorded_on: str, here: str) -> Attribution:
    if not adders:
        moved = next((row for row in rows if row.inherited), None)
        where = (f"the first call handed a different input is {moved.label} ({moved.cls}), by {_error(moved.inherited, moved.inherited_rel)}: "
                 "check the test's input (golden.input's seed and shape) and any preprocessing before the model"
                 if moved else "no traced call adds or inherits a difference: the change is in code the trace does "
                 "not see (the output's post-processing, or functions called outside modules)")
        return Attribution("none (drift from the input)", f"every module gives its recorded output on its "
                           f"recorded input; {where}")
    if recorded_on == here or len(adders) == 1:
        first = adders[0]
        return Attribution(f"{first.label} ({first.cls})", f"the first module whose own output changed: "
                           f"{_error(first.local, first.local_rel)} on its recorded input (noise floor "
                           f"{first.floor:.3g}); the modules after it inherit what it adds")
    ranked = sorted(adders, key=lambda row: -(row.local_rel or 0.0))
    why = f"kernels differ (recorded on {recorded_on or 'an unknown machine'}, here {here}), so every module adds a little"
    if (ranked[0].local_rel or 0.0) >= STANDS_OUT * (ranked[1].local_rel or 0.0):
        top = ranked[0]
        return Attribution(f"{top.label} ({top.cls})", f"{why}; {top.label} adds {_error(top.local, top.local_rel)}, "
                           f"over {STANDS_OUT:g}x any other ({len(adders) - 1} more add less)")
    names = ", ".join(f"{row.label} ({row.cls}) {_error(row.local, row.local_rel)}" for row in ranked[:3])
    return Attribution("unclear", f"{why}, and none stands out ({len(adders)} add): the largest three, relative to "
                       f"their own output: {names}")


def _measure(call: Call, record: CallRecord, model: Any, now: "Call | None", current: "CallCapture | None") -> Row:
    import torch

    row = Row(call.label, call.cls, parent=call.parent, index=call.index)
    want = tensor_leaves(call.output, record.tensors)
    if now is not None and current is not None and now.inputs is not None:
        got_in = tensor_leaves(now.inputs, current.tensors)
        row.inherited, row.inherited_rel = _difference(got_in, tensor_leaves(call.inputs, record.tensors))
    try:
        module = model if call.module == "(model)" else model.get_submodule(call.module)
        with torch.no_grad(), recorded_mode(module, call.training):
            inputs = unpack(call.inputs, record.tensors, _device_of(module))
            output = module(*inputs["args"], **inputs["kwargs"])
    except (NotReplayable, AttributeError, TypeError, RuntimeError) as err:
        row.verdict = f"not replayed ({type(err).__name__}: {str(err)[:60]})"
        return row
    row.local, row.local_rel = _difference(_live_leaves(output), want)
    row.floor = _floor(want)
    if row.local is not None and row.local > row.floor:
        row.verdict = "adds"
    elif row.inherited:
        row.verdict = "inherits"
    return row


def _mark_containers(rows: list[Row]) -> None:
    """A call with a traced descendant that adds is not blamed itself: its verdict becomes ``contains``."""
    by_index = {row.index: row for row in rows}
    for row in rows:
        if row.verdict != "adds":
            continue
        parent = by_index.get(row.parent) if row.parent is not None else None
        while parent is not None:
            if parent.verdict == "adds":
                parent.verdict = "contains"
            parent = by_index.get(parent.parent) if parent.parent is not None else None


def _difference(got: dict, want: dict) -> "tuple[float | None, float | None]":
    """(largest |got - want|, that relative to the largest |want|) over the tensors at the same places; inf where
    a place is missing or its shape changed; (None, None) when there is nothing to compare."""
    import torch

    if not want:
        return None, None
    worst, scale = 0.0, 0.0
    for place, expected in want.items():
        actual = got.get(place)
        if not isinstance(actual, torch.Tensor) or actual.shape != expected.shape:
            return math.inf, math.inf
        a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
        if e.numel():
            diff = (a - e).abs()
            diff = torch.where(torch.isnan(a) & torch.isnan(e), torch.zeros_like(diff), diff)
            worst = max(worst, float(diff.nan_to_num(nan=math.inf).max()))
            finite = e[torch.isfinite(e)].abs()
            scale = max(scale, float(finite.max()) if finite.numel() else 0.0)
    return worst, (worst / scale if scale else (0.0 if worst == 0 else math.inf))


def _floor(want: dict) -> float:
    """One ulp at the scale of the recorded output (0 for integer and bool outputs)."""
    import torch

    floor = 0.0
    for tensor in want.values():
        if tensor.is_floating_point() and tensor.numel():
            finite = tensor.detach()[torch.isfinite(tensor)].abs()
            scale = float(finite.max()) if finite.numel() else 0.0
            floor = max(floor, torch.finfo(tensor.dtype).eps * scale)
    return floor


def _live_leaves(value: Any, path: str = "") -> dict[str, Any]:
    """The tensors in a live output, placed as :func:`~reprohub.golden.calls.tensor_leaves` places them."""
    import torch

    if isinstance(value, torch.Tensor):
        return {path: value}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _live_leaves(item, f"{path}[{i}]").items()}
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _live_leaves(item, f"{path}.{key}").items()}
    return {}


def _device_of(module: Any):
    for tensor in [*module.parameters(), *module.buffers()]:
        return tensor.device
    return None


def _error(value: "float | None", relative: "float | None") -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return f"{value:.3g} (rel {relative:.2g})" if relative is not None and math.isfinite(relative) else f"{value:.3g}"
