"""Threads: which test a thread belongs to (the one that started it, directly or through threads of its own),
and work run beside a block (:func:`beside`).

A locked session is fenced as a whole (:mod:`reprohub.lock.hermetic`), and a request a thread makes after
its test ended -- during another test, after the last -- must be blamed on the test that started it, not on
an innocent one.  While :func:`attribute_threads` is on, ``threading.Thread.start`` stamps each new thread.

Example:
    >>> attribute_threads(lambda: "test_a.py::test_a")
    >>> seen = []
    >>> t = threading.Thread(target=lambda: seen.append(starting_test())); t.start(); t.join()
    >>> attribute_threads(None)
    >>> seen
    ['test_a.py::test_a']
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Iterator

THREAD_TEST = "_reprohub_test"  # on a thread: the test that started it
_thread_start = threading.Thread.start


def attribute_threads(current_test: "Callable[[], str | None] | None") -> None:
    """While ``current_test`` is set, each thread started is stamped with the test that started it (directly or
    through threads of its own), so what it asks later -- during another test, after its own ended -- is
    attributed to that test; ``None`` stops stamping."""
    if current_test is None:
        threading.Thread.start = _thread_start
        return

    def start(thread: threading.Thread) -> None:
        if getattr(thread, THREAD_TEST, None) is None:
            setattr(thread, THREAD_TEST, getattr(threading.current_thread(), THREAD_TEST, None) or current_test())
        _thread_start(thread)

    threading.Thread.start = start


def starting_test() -> "str | None":
    """The test that started the current thread (``None``: a thread no test started, or stamping is off)."""
    return getattr(threading.current_thread(), THREAD_TEST, None)


@contextlib.contextmanager
def beside(work: Callable[[], Any]) -> Iterator[None]:
    """Run ``work`` on its own thread while the block runs, and wait for it when the block ends; an exception
    ``work`` raised is raised there (after one the block raised, which wins).  Worth it where both sides spend
    their time outside the GIL (hashing, writing, torch kernels).

    Example:
        >>> done = []
        >>> with beside(lambda: done.append("hashed")):
        ...     done.append("written")
        >>> sorted(done)
        ['hashed', 'written']
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as err:  # handed to the waiting thread, raised there
            failure.append(err)

    thread = threading.Thread(target=run, name="reprohub-beside", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if failure:
        raise failure[0]
