"""Where a trace keeps its copies: blocks of memory handed from one recording to the next.

A traced recording copies every activation it keeps (16 MiB for a ResNet-18-sized model on a 160x160 image).
Fresh memory costs a page fault on the first touch of each 4 KiB page, and the allocator gives large blocks
back to the system when they are freed, so every recording paid those faults again: on this project's 2-core
VM, 8 ms of a 30 ms forward pass, more than the copies themselves (``python benchmarks/traced.py``).  An
:class:`Arena` cuts its copies out of blocks (``CHUNK_BYTES`` each, or one tensor's size when larger) and, when
its trace ends, leaves them in a pool that the next arena takes from.

**Reuse never overwrites a live tensor.**  A pooled block is reused only when nothing but the pool references
its storage (torch's storage use count, read when the block is taken): while a single copy cut from it is
alive -- in a call record, in a user's hands -- the block is skipped and stays pooled for later.  Where that
count cannot be read (a torch without ``_storage_Use_Count``), nothing is pooled and each copy is a plain
``clone``.  The pool holds at most ``POOL_BYTES``; a process that traced once keeps that much at most.

Example:
    >>> import torch
    >>> arena = Arena()
    >>> copy = arena.copy(torch.arange(4.0).view(2, 2).t())   # any layout in, a contiguous copy out
    >>> copy.tolist(), copy.is_contiguous()
    ([[0.0, 2.0], [1.0, 3.0]], True)
    >>> arena.close()
"""

from __future__ import annotations

import threading
from typing import Any

CHUNK_BYTES = 8 << 20
POOL_BYTES = 64 << 20
_ALIGN = 64  # each copy starts on a cache line, as a fresh allocation would

_pool: "list[tuple[Any, int]]" = []  # (block, its use count when only the pool holds it)
_pool_lock = threading.Lock()


def _use_count(block: Any) -> "int | None":
    import torch

    count = getattr(torch._C, "_storage_Use_Count", None)
    return count(block.untyped_storage()._cdata) if count is not None else None


class Arena:
    """Contiguous copies of tensors, cut from pooled blocks of CPU memory (see the module docstring)."""

    def __init__(self) -> None:
        self.blocks: "list[tuple[Any, int]]" = []
        self.used = 0  # bytes cut from the last block

    def copy(self, tensor: Any) -> Any:
        """A contiguous copy of ``tensor`` (detached); a CUDA, sparse or empty tensor is cloned as it is."""
        import torch

        size = tensor.numel() * tensor.element_size()
        if not tensor.is_cpu or tensor.layout != torch.strided or not size or tensor.is_quantized:
            return tensor.detach().clone(memory_format=torch.contiguous_format)
        start = -(-self.used // _ALIGN) * _ALIGN
        if not self.blocks or start + size > self.blocks[-1][0].numel():
            if not self._next_block(size):
                return tensor.detach().clone(memory_format=torch.contiguous_format)
            start = 0
        self.used = start + size
        out = self.blocks[-1][0][start:start + size].view(tensor.dtype).view(tensor.shape)
        out.copy_(tensor.detach() if tensor.requires_grad else tensor)
        return out

    def _next_block(self, size: int) -> bool:
        """Take a free pooled block of at least ``size`` bytes, or make one; ``False`` where blocks cannot be
        told free (then nothing is pooled)."""
        import torch

        with _pool_lock:
            for i, (block, alone) in enumerate(_pool):
                if block.numel() >= size and _use_count(block) == alone:
                    self.blocks.append(_pool.pop(i))
                    return True
        block = torch.empty(max(size, CHUNK_BYTES), dtype=torch.uint8)
        alone = _use_count(block)
        if alone is None:
            return False
        self.blocks.append((block, alone))
        return True

    def close(self) -> None:
        """Hand the blocks to the pool (their copies stay valid: a block is reused only once they are gone)."""
        with _pool_lock:
            for entry in self.blocks:
                if sum(block.numel() for block, _ in _pool) + entry[0].numel() <= POOL_BYTES:
                    _pool.append(entry)
        self.blocks = []
