"""What each traced module call received and returned, kept beside a traced golden so that a failure can
say where a change *starts* (:mod:`reprohub.golden.attribution`), not only where it first shows.

While ``golden.trace(model)`` is active, a forward pre-hook copies every submodule call's arguments
(tensors, nested tuples/lists/dicts of them, and plain values; anything else is kept as its text and
makes the call not replayable) and a forward hook copies its output.  A tensor that a call receives as
it was returned by an earlier one (the same object, unmodified: ``_version`` unchanged) is stored once
and referenced, so a chain of layers costs about one copy of each activation, and a container's
arguments and output are mostly its children's.  A ``ReLU(inplace=True)`` changes the tensor it gets,
so its output is a new copy.

**Budget.** At most ``REPROHUB_TRACE_BUDGET_MIB`` MiB of tensors (default 64) are kept per golden: calls
are kept in call order while they fit; a call whose new tensors would not fit is dropped (it is not
attributed) and the record says how many were kept.  Early calls are the valuable ones: a change that
starts there is what a reviewer must find.

**On disk.** Beside ``<key>.safetensors``: ``<key>+calls.safetensors`` (the tensors, and the calls as
sorted JSON in its metadata: byte-identical for identical calls) and ``<key>+calls.txt`` (one line per
call: the module, its class and what went in and out, for review in any diff).  ``+`` never occurs in a
golden key, so the names cannot collide with a golden's.  The golden's metadata holds the record's
digest (``calls_header_sha256``: the sha256 of its header, which names each tensor's BLAKE3 digest,
written and checked by :mod:`reprohub.golden.streamed`; records written before hold ``calls_sha256``, the
whole file's),
and the golden's own digest is pinned in ``hub.lock``: the lock covers the record too, and a record that
does not match is never used.

Example:
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> capture = CallCapture(budget_bytes=1 << 20)
    >>> hooks = capture.attach(net)
    >>> _ = net(torch.ones(1, 3))
    >>> capture.detach(hooks)
    >>> [(c.label, c.cls) for c in capture.calls]
    [('(model)', 'Sequential'), ('0', 'Linear'), ('1', 'ReLU')]
    >>> len(capture.tensors)   # the input, Linear's output (ReLU's input), ReLU's output
    3
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from .. import settings
from ..errors import GoldenFileError
from ..redact import printable
from .arena import Arena

DEFAULT_BUDGET_MIB = 64
SUFFIX = "+calls.safetensors"
RECORD_DIGEST = "calls_header_sha256"  # in a golden's metadata: its record's header digest
WHOLE_FILE_DIGEST = "calls_sha256"  # the same in goldens recorded before: the whole record file's sha256


class NotReplayable(Exception):
    """A call's arguments hold something that was kept only as text."""


@dataclass
class Call:
    """One module call: which module (its qualified name, ``(model)`` for the root), its class, which call of
    that module it was, the call it ran inside, the mode it ran in, and what went in and came out (packed:
    tensors by name)."""

    index: int
    module: str
    cls: str
    number: int
    parent: "int | None"
    training: bool
    inputs: Any = None
    output: Any = None
    kept: bool = True
    done: int = -1  # the order calls finished in (a container after its children): what fingerprints follow

    @property
    def label(self) -> str:
        """``2`` for a module's first call, ``2#2`` for its second."""
        return self.module if self.number == 1 else f"{self.module}#{self.number}"


def _str_keys(mapping: dict) -> bool:
    for key in mapping:  # a loop, not all(<generator>): this runs for every traced call
        if not isinstance(key, str):
            return False
    return True


def budget_bytes() -> int:
    """The per-golden budget for kept tensors, from ``REPROHUB_TRACE_BUDGET_MIB`` (default 64 MiB)."""
    return int(settings.read_number(settings.TRACE_BUDGET, DEFAULT_BUDGET_MIB) * (1 << 20))


class CallCapture:
    """Copies of every module call's inputs and outputs within ``budget_bytes`` (see the module docstring).

    ``summarize``: take each copy's numbers for the record's text (:func:`summary`) as it is
    made.  ``entry_only``: keep only the calls the test made itself (no traced call around them), and only their
    inputs -- what a check that is not recording needs: on a failure those calls are run once more under a
    full capture (:func:`reprohub.golden.attribution.replayed`), so a passing check copies no activation.
    """

    def __init__(self, budget_bytes: int, entry_only: bool = False,
                 on_output: "Callable[[str, Any, Any], None] | None" = None, summarize: bool = False) -> None:
        import torch

        self.budget = budget_bytes
        self.entry_only = entry_only
        self.on_output = on_output  # called with (module name, module, output) after each kept-or-not call
        self.summaries: dict[str, Any] = {}  # name -> the numbers its line in ``+calls.txt`` shows
        self._summary = None
        if summarize:  # recording: the text companion shows each tensor's numbers
            self._summary = summary
        self.calls: list[Call] = []
        self.tensors: dict[str, Any] = {}
        self.size = 0
        self._tensor = torch.Tensor  # resolved once: the hooks run hundreds of times a forward pass
        # id -> (a weak reference to the original, its version then, its name): held weakly, so that the forward
        # pass frees its activations as untraced (holding them made it take fresh, page-faulting memory for every
        # activation: 8 ms of a ResNet-18's 22), and the reference tells a reused id from the tensor itself
        self._seen: dict[int, tuple[Any, int, str]] = {}
        self._stack: list[int] = []
        self._numbers: Counter = Counter()
        self.finished = 0
        self.last: "Call | None" = None  # the call that finished last
        self._arena = Arena()

    def attach(self, model: Any) -> list:
        """Hook every submodule of ``model``; returns the handles for :meth:`detach`."""
        handles = []
        for name, module in model.named_modules():
            label = name or "(model)"
            handles.append(module.register_forward_pre_hook(self._before(label), with_kwargs=True))
            handles.append(module.register_forward_hook(self._after(label)))
        return handles

    def detach(self, handles: list) -> None:
        """Remove ``handles``; the copies made stay valid (their memory is pooled for later traces only once they
        are gone, :mod:`reprohub.golden.arena`)."""
        for handle in handles:
            handle.remove()
        self._arena.close()

    def _before(self, name: str):
        def hook(module, args, kwargs):
            stack = self._stack
            if self.entry_only and stack:
                stack.append(-1)  # inside an entry call: nothing kept
                return
            self._numbers[name] += 1
            call = Call(len(self.calls), name, type(module).__name__, self._numbers[name],
                        stack[-1] if stack else None, module.training)
            self.calls.append(call)
            stack.append(call.index)
            if not kwargs and len(args) == 1 and isinstance(args[0], self._tensor):  # most calls: packed directly
                call.inputs = self._keep(call, args[0], as_arguments=True)
            else:
                call.inputs = self._keep(call, {"args": list(args), "kwargs": kwargs})
        return hook

    def _after(self, name: str):
        def hook(module, args, output):
            index = self._stack.pop()
            if index < 0 or self.entry_only:
                return
            call = self.last = self.calls[index]
            call.output = self._keep(call, output)
            call.done, self.finished = self.finished, self.finished + 1
            if self.on_output is not None:
                self.on_output(name, module, output)
        return hook

    def _keep(self, call: Call, value: Any, as_arguments: bool = False) -> Any:
        """``value`` packed, its new tensors copied, when the call is still kept and they fit the budget (a call
        is kept whole or not at all); ``as_arguments``: ``value`` is a call's one positional argument."""
        if not call.kept:
            return None
        fresh: dict[tuple[int, int], tuple[str, Any]] = {}
        packed = self._pack(value, fresh)
        if as_arguments:  # as _pack({"args": [value], "kwargs": {}}) would have it
            packed = {"map": {"args": {"seq": [packed], "tuple": False}, "kwargs": {"map": {}}}}
        new = sum(tensor.numel() * tensor.element_size() for _, tensor in fresh.values())
        if self.size + new > self.budget:
            call.kept = False
            return None
        self.size += new
        for key, (name, tensor) in fresh.items():
            self.tensors[name] = self._arena.copy(tensor)
            if self._summary is not None:  # now, while the forward pass's threads are awake and the copy is cached
                self.summaries[name] = self._summary(self.tensors[name])
            self._seen[key[0]] = (weakref.ref(tensor), key[1], name)
        return packed

    def _pack(self, value: Any, fresh: dict) -> Any:
        """``value`` as plain JSON, a tensor by the name it is (or will be, in ``fresh``) stored under."""
        if isinstance(value, self._tensor):
            key = (id(value), value._version)
            seen = self._seen.get(key[0])
            name = seen[2] if seen is not None and seen[1] == key[1] and seen[0]() is value else None
            if name is None:
                if key not in fresh:
                    fresh[key] = (f"t{len(self.tensors) + len(fresh):05d}", value)
                name = fresh[key][0]
            return {"t": name}
        if value is None or isinstance(value, (bool, int, float, str)):
            return {"v": value}
        if isinstance(value, (list, tuple)):
            return {"seq": [self._pack(item, fresh) for item in value], "tuple": isinstance(value, tuple)}
        if isinstance(value, dict) and _str_keys(value):
            return {"map": {k: self._pack(v, fresh) for k, v in value.items()}}
        return {"repr": printable(repr(value))[:80], "type": type(value).__name__}

    def kept(self) -> list[Call]:
        return [call for call in self.calls if call.kept]

    def complete(self) -> bool:
        """Whether every call was kept (then its record holds every output the fingerprints would describe)."""
        return all(call.kept for call in self.calls)


def summary(tensor: Any) -> Any:
    """``[mean, min, max]`` of ``tensor`` as one float tensor (not read back: on a GPU it stays queued), or ``None``
    where the record's text shows none (empty, complex, bool).  Taken by the trace as each copy is made."""
    import torch

    if not tensor.numel() or tensor.is_complex() or tensor.dtype == torch.bool:
        return None
    values = tensor if tensor.is_floating_point() and tensor.dtype != torch.float16 else tensor.float()
    values = values.float() if values.dtype == torch.bfloat16 else values
    low, high = torch.aminmax(values)
    return torch.stack([values.mean(), low, high])


def unpack(packed: Any, tensors: dict[str, Any], device: Any = None) -> Any:
    """The value ``packed`` stands for, each tensor a fresh contiguous copy (on ``device`` when given): MKL's
    result for a Linear depends on its input's alignment, and a tensor read from a file may sit anywhere."""
    import torch

    if "t" in packed:
        tensor = tensors[packed["t"]]
        tensor = tensor.to(device) if device is not None else tensor
        return tensor.clone(memory_format=torch.contiguous_format)
    if "v" in packed:
        return packed["v"]
    if "seq" in packed:
        items = [unpack(item, tensors, device) for item in packed["seq"]]
        return tuple(items) if packed["tuple"] else items
    if "map" in packed:
        return {k: unpack(v, tensors, device) for k, v in packed["map"].items()}
    raise NotReplayable(f"{packed.get('type')} {packed.get('repr')}")


@contextlib.contextmanager
def buffers_kept(model: Any) -> Iterator[None]:
    """Run ``model`` again inside the block without a trace of it after: its buffers (BatchNorm's running
    statistics and batch count in train mode) are put back as they were."""
    import torch

    saved = [(buffer, buffer.clone()) for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, before in saved:
                buffer.copy_(before)


class recorded_mode:
    """Every submodule in the recorded train/eval mode inside the block, as it was before after it."""

    def __init__(self, module: Any, training: bool) -> None:
        self.module, self.training = module, training
        self.before: list = []

    def __enter__(self) -> None:
        self.before = [(m, m.training) for m in self.module.modules()]
        self.module.train(self.training)

    def __exit__(self, *exc) -> None:
        for m, mode in self.before:
            m.training = mode


def tensor_leaves(packed: Any, tensors: dict[str, Any], path: str = "") -> dict[str, Any]:
    """The tensors in ``packed`` by their place (``args[0]``, ``[1]``, ``.logits``); no copies."""
    if packed is None:
        return {}
    if "t" in packed:
        return {path: tensors[packed["t"]]}
    if "seq" in packed:
        return {k: v for i, item in enumerate(packed["seq"]) for k, v in tensor_leaves(item, tensors, f"{path}[{i}]").items()}
    if "map" in packed:
        return {k: v for key, item in packed["map"].items() for k, v in tensor_leaves(item, tensors, f"{path}.{key}").items()}
    return {}


def calls_path(golden: Path) -> Path:
    """``<key>+calls.safetensors`` beside ``<key>.safetensors``."""
    return golden.with_name(golden.name.removesuffix(".safetensors") + SUFFIX)


def text_path(golden: Path) -> Path:
    return golden.with_name(golden.name.removesuffix(".safetensors") + "+calls.txt")


@dataclass
class CallRecord:
    """A stored record: the kept calls, their tensors (on the CPU), the machine class it was recorded on and how
    many calls the trace saw."""

    calls: list[Call]
    tensors: dict[str, Any]
    machine: str
    total: int
    budget: int
    summaries: dict[str, Any] = field(default_factory=dict)  # name -> its numbers for review, where taken


def calls_record(capture: CallCapture, machine: str) -> CallRecord:
    """What :func:`save_calls` writes of ``capture``: its kept calls and the tensors they name (on the CPU)."""
    kept = capture.kept()
    used = {name for call in kept for part in (call.inputs, call.output) for name in tensor_names(part)}
    tensors = {name: capture.tensors[name].cpu() for name in sorted(used)}
    summaries = {name: capture.summaries[name] for name in used if name in capture.summaries}
    return CallRecord(kept, tensors, machine, len(capture.calls), capture.budget, summaries)


def save_calls(golden: Path, record: CallRecord) -> str:
    """Write ``record`` beside ``golden`` (:func:`calls_path`); return its digest, for the golden's metadata
    under ``RECORD_DIGEST`` (:func:`reprohub.golden.streamed.write_parts`)."""
    from .streamed import write_parts

    # vars(), not asdict(): the packed values are plain JSON already, and asdict deep-copies every one
    meta = {"calls": json.dumps([vars(call) for call in record.calls], sort_keys=True), "machine": record.machine,
            "total": str(record.total), "budget": str(record.budget)}
    # unflushed: after a power loss a torn record fails its digest and is "not attributed" -- a hint, never a verdict
    return write_parts(calls_path(golden), record.tensors, meta, durable=False)


def names_record(metadata: Mapping[str, str]) -> bool:
    """Whether a golden with ``metadata`` names a call record."""
    return bool(metadata.get(RECORD_DIGEST) or metadata.get(WHOLE_FILE_DIGEST))


def tensor_names(packed: Any) -> list[str]:
    """The names of the stored tensors in ``packed``, in order."""
    if packed is None:
        return []
    if "t" in packed:
        return [packed["t"]]
    if "seq" in packed:
        return [n for item in packed["seq"] for n in tensor_names(item)]
    if "map" in packed:
        return [n for item in packed["map"].values() for n in tensor_names(item)]
    return []


def load_calls(golden: Path, metadata: Mapping[str, str]) -> CallRecord:
    """The record beside ``golden``, checked against the digest its golden's ``metadata`` names.

    Raises:
        GoldenFileError: no record, a damaged one, or one whose bytes are not those the golden pins.
    """
    from .engine import load_golden
    from .streamed import check_parts
    from ..fetch.fsutil import sha256_file

    path = calls_path(golden)
    if not names_record(metadata):
        raise GoldenFileError(f"a golden that names its call record {path.name}", "a golden without a trace",
                              "re-record the golden with its trace")
    if not path.is_file():
        raise GoldenFileError(f"the call record {path.name}", "no such file", "re-record the golden with its trace")
    if metadata.get(RECORD_DIGEST):
        check_parts(path, metadata[RECORD_DIGEST])
    elif (found := sha256_file(path)) != metadata[WHOLE_FILE_DIGEST]:
        raise GoldenFileError(f"the call record {path.name} with sha256 {metadata[WHOLE_FILE_DIGEST]} (named by its "
                              "golden)", f"sha256 {found}", "restore it from version control, or re-record the golden")
    stored = load_golden(path)
    meta = stored.metadata
    calls = [Call(**entry) for entry in json.loads(meta["calls"])]
    tensors = {key.removeprefix("out."): value for key, value in stored.leaves.items()}
    return CallRecord(calls, tensors, meta.get("machine", ""), int(meta.get("total", len(calls))),
                      int(meta.get("budget", 0)))
