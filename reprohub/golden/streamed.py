"""Call records written part by part: a safetensors file whose header names each tensor's BLAKE3 digest.

A traced golden keeps what every module call received and returned (:mod:`reprohub.golden.calls`): 16 MiB
for a ResNet-18-sized model on a 160x160 image.  One sha256 over such a file took 15 ms on this project's
2-core VM, after the forward pass: half of what a traced recording added.  :func:`write_parts` hashes each
tensor (a *part*) on its own with BLAKE3 (a cryptographic hash, 3.6 ms for those 16 MiB on one core here:
``python benchmarks/traced.py`` measures the whole recording), on two threads at once, each writing its parts
into place as it hashes them while the bytes are still in its cache; the header, written last into the space
kept for it, lists every part's digest (the ``__metadata__`` entry ``part_blake3``), and the record's digest
is the sha256 of the header (the file's first ``8 + N`` bytes).

**As strong as one digest of the file.**  :func:`check_parts` checks the header against the digest the
golden names, then each part against the header, and that the parts cover the data exactly: a byte changed,
added or cut anywhere changes the header's digest or a part's, and the check names which.  Nothing in the
header is read before its digest matched.

**Any reader's safetensors.**  The header is JSON padded with spaces to 8 bytes, then the data, in the
order of the header's offsets; it is written after the data into the bytes kept for it, which placeholder
digests (as long as the real ones) sized exactly.  Written to a temp file and renamed into place, as every
reprohub file.

Example:
    >>> import torch, tempfile, os
    >>> from reprohub.golden.engine import load_golden
    >>> path = os.path.join(tempfile.mkdtemp(), "r.safetensors")
    >>> digest = write_parts(path, {"a": torch.ones(2)}, {"k": "v"})
    >>> check_parts(path, digest)
    >>> load_golden(path).leaves["out.a"].tolist()
    [1.0, 1.0]
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import GoldenFileError
from ..fetch.fsutil import atomic_replace_with
from ..runtime.threads import beside
from .engine import METADATA_KEY, _key_part, _storable

PARTS_KEY = "part_blake3"
MAX_HEADER = 100_000_000  # safetensors' own limit
_PLACEHOLDER = "0" * 64

_DTYPE_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3",
                "float8_e5m2": "F8_E5M2", "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8",
                "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL", "complex64": "C64"}


def write_parts(path: "str | Path", tensors: Mapping[str, Any], metadata: Mapping[str, str],
                durable: bool = True) -> str:
    """Write ``{name: tensor}`` to ``path`` as a golden (read back as leaves ``out.<name>``) whose header names
    each tensor's BLAKE3 digest; return the sha256 of the header (see the module docstring)."""
    import torch
    from blake3 import blake3

    parts, structure, entries, offset = [], [], {}, 0
    for name in sorted(tensors):
        tensor, entry = _storable(tensors[name])
        key = f"out{_key_part(name)}"
        structure.append({"key": key, "kind": "tensor", **entry})
        size = tensor.numel() * tensor.element_size()
        entries[key] = {"dtype": _DTYPE_CODES[str(tensor.dtype).removeprefix("torch.")], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        parts.append((key, memoryview(tensor.reshape(-1).view(torch.uint8).numpy())))
        offset += size
    described = json.dumps({"meta": {k: str(v) for k, v in metadata.items()}, "structure": structure}, sort_keys=True)
    rest = json.dumps({**entries, "__metadata__": {METADATA_KEY: described}}, sort_keys=True, separators=(",", ":"))
    opening = '{"__metadata__":{'  # "__metadata__" sorts before every "out..." key, and PARTS_KEY before
    if not rest.startswith(opening):  # METADATA_KEY: the digests go in front, as a full json.dumps would put them
        raise AssertionError(f"a header that starts {rest[:40]!r}")

    def header(digests: Mapping[str, str]) -> bytes:  # the rest is encoded once: the calls in it are long
        text = f'{opening}"{PARTS_KEY}":{json.dumps(json.dumps(digests, sort_keys=True))},{rest[len(opening):]}'.encode()
        text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as safetensors writes it
        return len(text).to_bytes(8, "little") + text

    kept = len(header({key: _PLACEHOLDER for key, _ in parts}))
    digests: dict[str, str] = {}
    first, second = _halves([(key, view, kept + entries[key]["data_offsets"][0]) for key, view in parts])
    written: list[bytes] = []

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out:
            def hash_and_write(share: list) -> None:
                for key, view, at in share:  # both let go of the GIL: the two shares run side by side
                    digests[key] = blake3(view).hexdigest()
                    _write_at(out.fileno(), view, at)  # while the hash left the bytes in the cache

            with beside(lambda: hash_and_write(first)):
                hash_and_write(second)
            head = header(digests)
            if len(head) != kept:  # cannot happen: hex digests are as long as the placeholders
                raise AssertionError(f"header of {len(head)} bytes where {kept} were kept")
            out.write(head)
        written.append(head)

    atomic_replace_with(path, write, durable)
    return hashlib.sha256(written[0]).hexdigest()


def _write_at(fd: int, view: memoryview, at: int) -> None:
    """All of ``view`` at offset ``at`` (a short write goes on where it stopped)."""
    while view:
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


def _halves(parts: list) -> "tuple[list, list]":
    """``parts`` in two shares of about equal bytes, the largest placed first."""
    shares: "tuple[list, list]" = ([], [])
    sizes = [0, 0]
    for part in sorted(parts, key=lambda p: -len(p[1])):
        lighter = 0 if sizes[0] <= sizes[1] else 1
        shares[lighter].append(part)
        sizes[lighter] += len(part[1])
    return shares


def check_parts(path: "str | Path", header_sha256: str) -> None:
    """Check a file :func:`write_parts` wrote against the header digest its golden names.

    Raises:
        GoldenFileError: the header, or a named part, is not what the digest names, or the data is longer or
            shorter than the parts (with what to do: restore the file, or re-record).
    """
    from blake3 import blake3

    path = Path(path)
    with open(path, "rb") as source:
        prefix = source.read(8)
        size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 <= size <= MAX_HEADER:
            _refuse(path, header_sha256, f"no safetensors header (a length of {size})")
        head = prefix + source.read(size)
        found = hashlib.sha256(head).hexdigest()
        if found != header_sha256:
            _refuse(path, header_sha256, f"a header with sha256 {found}")
        data = memoryview(source.read())
    entries = json.loads(head[8:])
    listed = json.loads(entries.pop("__metadata__")[PARTS_KEY])
    if set(listed) != set(entries):
        _refuse(path, header_sha256, f"parts {sorted(set(entries) ^ set(listed))} in only one of header and list")
    end = max((entry["data_offsets"][1] for entry in entries.values()), default=0)
    if len(data) != end:
        _refuse(path, header_sha256, f"{len(data)} bytes of data where the parts cover {end}")
    for key in sorted(entries):
        start, stop = entries[key]["data_offsets"]
        if blake3(data[start:stop]).hexdigest() != listed[key]:
            _refuse(path, header_sha256, f"part {key} (bytes {start}-{stop}) with other bytes than its header names")


def _refuse(path: Path, header_sha256: str, found: str) -> None:
    raise GoldenFileError(f"the call record {path.name} whose header has sha256 {header_sha256} (named by its "
                          "golden), each part as its header names", found,
                          "restore it from version control, or re-record the golden")
