"""The first layer that moved: a compact fingerprint of every submodule's output, in execution order.

``with golden.trace(model): out = model(x)`` puts a forward hook on every submodule; each call
records the output's shape, dtype, summary statistics (min, max, mean, std) and ``SAMPLE`` values
taken at evenly spaced positions.  The next ``golden.check(out)`` stores the list with the golden
(its ``trace`` metadata, so the lock's digest covers it) -- unless the golden's call record
(:mod:`reprohub.golden.calls`) kept every call's output: then the fingerprints are computed from the
record when a check fails, and not stored twice.  When that check fails, :func:`first_moved`
walks both lists in order and names the earliest module whose output left the tolerance, with its
difference, and the modules before it that still matched: a changed kernel, BLAS or weight shows
*where* it entered instead of only at the output.  At most ``MAX_CALLS`` calls are kept (a big model's
first ones, and the trace says it was cut), so a golden stays small.

Example:
    >>> import torch
    >>> torch.manual_seed(0); net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    <torch._C.Generator object at ...>
    >>> x = torch.ones(1, 3)
    >>> with Tracer(net) as before:
    ...     _ = net(x)
    >>> with torch.no_grad():
    ...     net[2].weight += 0.01
    >>> with Tracer(net) as after:
    ...     _ = net(x)
    >>> print(first_moved(before.fingerprints(), after.fingerprints(), rtol=1e-5, atol=1e-6).splitlines()[0])
    first module that moved: 2 (Linear): greatest difference 0.0... (tolerance atol 1e-06 + rtol 1e-05 x |expected|)
"""

from __future__ import annotations

import json
from typing import Any

MAX_CALLS = 512
SAMPLE = 16
TRUNCATED = "(trace cut)"


class Tracer:
    """Forward hooks on every submodule of ``model`` while the block runs; ``entries`` is what they saw, and
    ``calls`` the copies of each call's inputs and outputs (:mod:`reprohub.golden.calls`).

    ``recording=False`` (a check that will not record): only the calls the test itself made into the model are
    kept, with their inputs, and nothing is fingerprinted, so a passing check costs a few hooks; a failing one
    runs those calls again under a full tracer (:meth:`replay`) for its report.
    """

    def __init__(self, model: Any, recording: bool = True) -> None:
        from .calls import CallCapture, budget_bytes

        self.model = model
        self.recording = recording
        self.entries: list[dict] = []
        # the fingerprints come from the capture's own hook: a second hook on every module costs a forward pass
        # of a ResNet-18 about 2 ms of Python
        self.calls = CallCapture(budget_bytes(), entry_only=not recording,
                                 on_output=self._record if recording else None, summarize=recording)
        self._handles: list = []

    def __enter__(self) -> "Tracer":
        import torch

        if not isinstance(self.model, torch.nn.Module):
            raise TypeError(f"golden.trace takes a torch.nn.Module, not {type(self.model).__name__}")
        self._handles.extend(self.calls.attach(self.model))
        return self

    def replay(self) -> "Tracer":
        """This block's calls into the model run again under a recording tracer (its fingerprints and every call's
        inputs and outputs), the model's buffers (BatchNorm's running statistics) left as they were.

        Raises:
            NotReplayable, RuntimeError, TypeError: a call kept only as text, or one that no longer runs.
        """
        import torch

        from .calls import buffers_kept, recorded_mode, unpack

        if self.recording:
            return self
        with buffers_kept(self.model), Tracer(self.model) as full, torch.no_grad():
            for call in self.calls.calls:
                if call.inputs is None:  # not kept within the budget
                    continue
                module = self.model if call.module == "(model)" else self.model.get_submodule(call.module)
                with recorded_mode(module, call.training):
                    inputs = unpack(call.inputs, self.calls.tensors)
                    module(*inputs["args"], **inputs["kwargs"])
        return full

    def __exit__(self, *exc) -> None:
        self.calls.detach(self._handles)
        self._handles.clear()
        self.calls.on_output = None  # no cycle: the copies are freed (and their memory reused) with the tracer

    def _record(self, name: str, module: Any, output: Any) -> None:
        """After each call (:class:`CallCapture`'s hook): its fingerprints, or the kept call they will come from."""
        if len(self.entries) > MAX_CALLS:
            return
        if len(self.entries) == MAX_CALLS:
            self.entries.append({"module": TRUNCATED})
            return
        kept = self.calls.last
        if kept is not None and kept.kept and kept.output is not None:
            self.entries.append((name, type(module).__name__, kept))  # its copy is fingerprinted if ever needed
            return
        self.entries.extend(_fingerprints(name, type(module).__name__, output))

    def fingerprints(self) -> list[dict]:
        """Every call's fingerprints, those of kept calls computed now from their copies (a recording whose calls
        were all kept stores none: its call record holds more, :func:`fingerprints_of`)."""
        from .calls import unpack

        found: list[dict] = []
        for entry in self.entries:
            if isinstance(entry, tuple):
                name, cls, call = entry
                found.extend(_fingerprints(name, cls, unpack(call.output, self.calls.tensors)))
            else:
                found.append(entry)
        return found


def fingerprints_of(record: Any) -> list[dict]:
    """The fingerprints of a call record's outputs, in the order the calls finished, as :class:`Tracer` takes them."""
    from .calls import unpack

    return [found for call in sorted(record.calls, key=lambda c: c.done) if call.output is not None
            for found in _fingerprints(call.module, call.cls, unpack(call.output, record.tensors))][:MAX_CALLS]


def _fingerprints(name: str, cls: str, output: Any) -> list[dict]:
    return [{"module": name + suffix, "class": cls, **fingerprint(tensor)} for suffix, tensor in _tensors(output)]


def _tensors(output: Any, suffix: str = "") -> list:
    import torch

    if isinstance(output, torch.Tensor):
        return [(suffix, output)]
    if isinstance(output, (list, tuple)):
        return [found for i, item in enumerate(output) for found in _tensors(item, f"{suffix}[{i}]")]
    if isinstance(output, dict):
        return [found for key, item in output.items() for found in _tensors(item, f"{suffix}[{key!r}]")]
    return []


def fingerprint(tensor: Any) -> dict:
    """Shape, dtype, min/max/mean/std and ``SAMPLE`` evenly spaced values of ``tensor``, as plain numbers."""
    import torch

    t = tensor.detach().reshape(-1)
    shape, dtype = list(tensor.shape), str(tensor.dtype).removeprefix("torch.")
    if t.numel() == 0 or t.is_complex():
        return {"shape": shape, "dtype": dtype, "stats": [], "values": []}
    values = t.to("cpu", torch.float64)
    picks = torch.linspace(0, values.numel() - 1, min(SAMPLE, values.numel())).round().long()
    # three passes over the float64 copy: min and max together, the sum, the sum of squares (as a norm); the
    # standard deviation from those is exact to ~1e-14 relative in float64, at half the cost of mean() + std()
    low, high = torch.aminmax(values)
    n = values.numel()
    total, squares = values.sum(), torch.linalg.vector_norm(values) ** 2
    variance = ((squares - total * total / n) / (n - 1)).clamp(min=0) if n > 1 else values.new_zeros(())
    stats = torch.stack([low, high, total / n, variance.sqrt()]).tolist()
    return {"shape": shape, "dtype": dtype, "stats": stats, "values": values[picks].tolist()}


def encode(entries: list[dict]) -> str:
    """The trace as compact, stable JSON (the golden's ``trace`` metadata)."""
    return json.dumps(entries, separators=(",", ":"), sort_keys=True)


def decode(text: str | None) -> list[dict]:
    """A stored trace, or ``[]`` for none (or a damaged one: attribution is a hint, never a verdict)."""
    try:
        entries = json.loads(text) if text else []
    except ValueError:
        return []
    return entries if isinstance(entries, list) and all(isinstance(e, dict) for e in entries) else []


def first_moved(recorded: list[dict], current: list[dict], rtol: float, atol: float) -> str:
    """A report naming the earliest module whose output left ``atol + rtol * |expected|`` (values sampled and
    statistics), its difference, and the modules before it that matched; empty when no traced module moved."""
    matched: list[str] = []
    for index, (old, new) in enumerate(zip(recorded, current)):
        label = f"{new.get('module')} ({new.get('class', '?')})"
        if TRUNCATED in (old.get("module"), new.get("module")):
            break
        if (old.get("module"), old.get("class")) != (new.get("module"), new.get("class")):
            return (f"the model ran other modules from call {index} on: recorded {old.get('module')} "
                    f"({old.get('class', '?')}), now {label}" + _before(matched))
        if (old.get("shape"), old.get("dtype")) != (new.get("shape"), new.get("dtype")):
            return (f"first module that moved: {label}: output {new.get('dtype')} {new.get('shape')}, recorded "
                    f"{old.get('dtype')} {old.get('shape')}" + _before(matched))
        worst = _worst(old, new, rtol, atol)
        if worst is not None:
            return (f"first module that moved: {label}: greatest difference {worst:.6g} (tolerance atol {atol:g} + "
                    f"rtol {rtol:g} x |expected|)" + _before(matched))
        matched.append(label)
    return ""


def _worst(old: dict, new: dict, rtol: float, atol: float) -> float | None:
    """The greatest difference among sampled values and statistics, when one of them leaves the tolerance."""
    pairs = list(zip(old.get("values", []), new.get("values", []))) + list(zip(old.get("stats", []),
                                                                               new.get("stats", [])))
    worst, moved = 0.0, False
    for want, got in pairs:
        if not all(isinstance(v, (int, float)) for v in (want, got)):
            continue
        diff = abs(got - want) if want == want and got == got else (0.0 if want != want and got != got else float("inf"))
        worst = max(worst, diff)
        moved = moved or diff > atol + rtol * abs(want)
    return worst if moved else None


def _before(matched: list[str]) -> str:
    if not matched:
        return "; it is the first traced module"
    shown = ", ".join(matched[-8:])
    more = f"{len(matched) - 8} more and " if len(matched) > 8 else ""
    return f"\n  modules before it still matched: {more}{shown}"
