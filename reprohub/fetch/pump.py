"""Move one HTTP body into a file, hashing every byte once, the hash overlapping the copies.

:func:`pump` reads the socket and writes the file in the calling thread while a
long-lived helper thread hashes each buffer just written, so on two cores the
sha256 (the slowest stage, ~1.2 GB/s here) runs beside the copies and a 1 GiB
body takes about as long as its hash alone: 1 GiB at 1.16-1.18x curl and
1.85-1.87x torch.hub on an AMD EPYC VM, 0.94-1.03x curl and 1.56-2.00x torch.hub
on an Intel Xeon VM (``python benchmarks/run.py --only download``), where the
former chain of three threads (read -> write -> hash, 4 MiB buffers) reached
1.02-1.06x curl (the same command at commit e6372f0).  Feeding a writer thread
and the hasher at once, and 4 MiB buffers, were slower in development runs.
Helpers are kept for the next body and one more starts when large downloads run at
once.  :func:`pump_inline` does everything in one thread for bodies of a few hundred
KiB, where a hand-off costs more than it saves, and for bodies up to ``SMALL_BODY``
while other bodies are in flight in this process (:func:`in_flight`): then the other
downloads keep the second core busy, and a helper only adds hand-offs (four 2 MiB
downloads at once: 24.8 against 26.7 ms here, ``python benchmarks/fixed_costs.py``).  Both keep the bytes that
arrived before a network error, so the caller can resume after them.

Example:
    >>> import hashlib, io
    >>> src, out, h = io.BytesIO(b"abc"), io.BytesIO(), hashlib.sha256()
    >>> pump_inline(src.readinto, out, h, None, 1 << 16)
    >>> out.getvalue(), h.hexdigest()[:8]
    (b'abc', 'ba7816bf')
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Callable, Iterator

BUFFER = 1 << 20  # buffers of large bodies: they stay in the CPU caches between the write and the hash
BUFFERS = 8
WRITE_SLICE = 64 << 10
_flush_data = getattr(os, "fdatasync", os.fsync)  # macOS and Windows have no fdatasync
INLINE_BUFFER = 256 << 10  # bodies up to this size are pumped in one thread, bodies up to SMALL_BODY in
SMALL_BODY = 8 << 20  # buffers of this size, small enough that the socket keeps receiving meanwhile
KEEP_UP_TO, KEEP_COUNT = INLINE_BUFFER, 8  # buffers kept between bodies (see _buffers)


def pump_inline(read_into: Callable[[memoryview], int], out, hasher, bar, chunk_size: int,
                until_eof: bool = False) -> None:
    """Read, hash and write in this thread: for small bodies, where threads cost more than they save.

    A short read ends the body (a sized HTTP body), unless ``until_eof`` (a file, a pipe).
    """
    with _buffers(chunk_size, 1) as (buf,):
        while True:
            n, error = _read_full(read_into, memoryview(buf))
            view = memoryview(buf)[:n]
            hasher.update(view)
            out.write(view)
            if bar is not None:
                bar.update(n)
            if error is not None:
                raise error
            if n < len(buf) and (not until_eof or n == 0):
                return


def pump(read_into: Callable[[memoryview], int], out, hasher, bar, buffer_size: int = INLINE_BUFFER,
         buffers: int = 3, writeback: bool = False) -> None:
    """Read and write in this thread while a long-lived helper thread hashes each buffer.

    A buffer goes back to the free ones once hashed, so this thread reads and writes the next
    while the last is hashed.  Bytes that arrived before a network error are still written and
    hashed (a resume continues after them); a failed write (disk full) is raised once the hashes
    in flight are done.  ``writeback`` starts disk writeback every few dozen MiB, for callers
    that flush the file at the end.
    """
    with _buffers(buffer_size, buffers) as pool:
        _pump(read_into, out, hasher, bar, pool, writeback)


def _pump(read_into: Callable[[memoryview], int], out, hasher, bar, pool: list[bytearray], writeback: bool) -> None:
    buffer_size, buffers = len(pool[0]), len(pool)
    free: queue.SimpleQueue = queue.SimpleQueue()
    for buf in pool:
        free.put(buf)
    flusher = _Flusher(out, enabled=writeback)
    failed: list[BaseException] = []

    def hash_and_free(buf: bytearray, n: int) -> None:
        try:
            hasher.update(memoryview(buf)[:n])
        except BaseException as err:  # raised in this download's thread below, never lost
            failed.append(err)
        finally:
            free.put(buf)

    with _helper() as helper:
        held = None
        try:
            while True:
                held = free.get()
                n, error = _read_full(read_into, memoryview(held))
                if n:
                    _write_in_slices(out, memoryview(held)[:n])  # before the hash: it overlaps the next read
                    buf, held = held, None
                    helper.run(hash_and_free, buf, n)
                    flusher.wrote(n)
                    if bar is not None:
                        bar.update(n)
                if error is not None:
                    raise error
                if n < buffer_size:
                    return
        finally:
            if held is not None:
                free.put(held)
            for _ in range(buffers):  # every buffer back: no hash is still running
                free.get()
            flusher.close()
            if failed:  # the digest is wrong from here on: this wins over any network error (no resume)
                raise failed[0]


_in_flight = 0
_in_flight_lock = threading.Lock()


@contextlib.contextmanager
def in_flight() -> Iterator[int]:
    """Count one body as being pumped while the block runs; yields how many others are right now.

    Example:
        >>> with in_flight() as others, in_flight() as others_then:
        ...     others, others_then
        (0, 1)
    """
    global _in_flight
    with _in_flight_lock:
        others = _in_flight
        _in_flight += 1
    try:
        yield others
    finally:
        with _in_flight_lock:
            _in_flight -= 1


def _forget_in_flight() -> None:
    """In a forked child: none of the parent's downloads is in flight there (and its lock may have been held)."""
    global _in_flight, _in_flight_lock
    _in_flight, _in_flight_lock = 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_flight)


def pump_body(read_into: Callable[[memoryview], int], out, hasher, bar, size: int | None, large_buffer: int = BUFFER,
              writeback: bool = False) -> None:
    """Pump a sized HTTP body (``size`` bytes; ``None``: not known) the cheapest way for its size:
    in one thread up to ``INLINE_BUFFER``, and up to ``SMALL_BODY`` while other bodies are in flight;
    else beside a hashing helper, in ``large_buffer`` pieces above ``SMALL_BODY`` (``writeback``: see
    :func:`pump`)."""
    with in_flight() as others:
        if size is not None and (size <= INLINE_BUFFER or (others and size <= SMALL_BODY)):
            pump_inline(read_into, out, hasher, bar, INLINE_BUFFER)
        elif size is not None and size <= SMALL_BODY:
            pump(read_into, out, hasher, bar)
        else:
            pump(read_into, out, hasher, bar, large_buffer, BUFFERS, writeback)


_kept_buffers: dict[int, list[bytearray]] = {}
_kept_lock = threading.Lock()


@contextlib.contextmanager
def _buffers(size: int, count: int) -> Iterator[list[bytearray]]:
    """``count`` buffers of ``size`` bytes, kept for the next body when they are small.

    Three fresh 256 KiB buffers cost 0.43 ms here (glibc maps each, and every page faults on first
    use), a tenth of a whole 1 MiB download; kept ones cost nothing.  Only buffers up to
    ``KEEP_UP_TO`` are kept, at most ``KEEP_COUNT`` of each size (1.5 MiB in all), so a process holds
    no memory for its large downloads, whose transfer dwarfs the allocation.  A buffer is reused
    only after every read, write and hash of the body before it has finished (``pump`` waits for
    all its buffers), and only ``[:n]`` of what was just read is ever written or hashed.
    """
    keep = size <= KEEP_UP_TO
    with _kept_lock:
        kept = _kept_buffers.setdefault(size, []) if keep else []
        taken = [kept.pop() for _ in range(min(count, len(kept)))]
    taken += [bytearray(size) for _ in range(count - len(taken))]
    try:
        yield taken
    finally:
        if keep:
            with _kept_lock:
                kept.extend(taken[: max(0, KEEP_COUNT - len(kept))])


class _HashingThread:
    """A daemon thread that runs the jobs given to it one after another, in order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._run, name="reprohub-hash", daemon=True).start()

    def run(self, job: Callable[..., None], *args) -> None:
        self._jobs.put((job, args))

    def _run(self) -> None:
        while True:
            job, args = self._jobs.get()
            job(*args)


_idle_helpers: list[_HashingThread] = []
_idle_lock = threading.Lock()


@contextlib.contextmanager
def _helper() -> Iterator[_HashingThread]:
    """A hashing thread of this download's own: an idle one (no start-up), or a new one when several
    downloads run at once (each hash stays on its own core)."""
    with _idle_lock:
        helper = _idle_helpers.pop() if _idle_helpers else None
    helper = helper or _HashingThread()
    try:
        yield helper
    finally:
        with _idle_lock:
            _idle_helpers.append(helper)


if hasattr(os, "register_at_fork"):  # a forked child has none of the parent's threads: it starts its own
    os.register_at_fork(after_in_child=_idle_helpers.clear)


class _Flusher:
    """Start disk writeback every few dozen MiB from a side thread.

    The final ``fsync`` (which makes the atomic rename crash-safe) then has
    only the tail left to flush, instead of stalling on the whole file.
    """

    EVERY = 32 << 20

    def __init__(self, out, enabled: bool = True) -> None:
        self._enabled = enabled  # off when no final fsync follows (the boot id vouches instead)
        self._fd = out.fileno() if enabled else -1  # an in-memory buffer has no file number
        self._pending = 0
        self._wake = threading.Event()
        self._done = False
        self._thread: threading.Thread | None = None

    def wrote(self, n: int) -> None:
        self._pending += n
        if self._enabled and self._pending >= self.EVERY:
            self._pending = 0
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reprohub-flush", daemon=True)
                self._thread.start()
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._done:
                return
            with contextlib.suppress(OSError):
                _flush_data(self._fd)

    def close(self) -> None:
        if self._thread is not None:
            self._done = True
            self._wake.set()
            self._thread.join()


def _write_in_slices(out, view: memoryview) -> None:
    """Write in 64 KiB slices: here the page cache takes 1 GiB in 64 KiB writes in a steady 0.33 s, in
    1 MiB writes in 0.29 s but now and then 1.2 s (``python benchmarks/fixed_costs.py``), and one stall
    costs more than the slices ever do."""
    for start in range(0, len(view), WRITE_SLICE):
        out.write(view[start:start + WRITE_SLICE])


def _read_full(read_into: Callable[[memoryview], int], view: memoryview) -> tuple[int, BaseException | None]:
    """Fill ``view`` until EOF; on an error return what arrived, and the error (raised once those bytes are
    written and hashed: they did arrive, and a resume continues after them).  Any ``Exception``: the reader is
    a socket, a file or a pipe, and the caller decides which errors are worth a retry."""
    got = 0
    try:
        while got < len(view):
            n = read_into(view[got:])
            if not n:
                break
            got += n
    except Exception as err:  # noqa: BLE001 -- returned, and raised by the caller
        return got, err
    return got, None
