"""A pytest plugin the CI-suite benchmark loads into each run (``-p per_test_timer``): the median time of one
test's whole protocol (setup, call, teardown), appended to ``$PER_TEST_OUT`` in microseconds.  Process
start-up and collection, which every variant pays alike and which make whole-process times noisy, are left
out: the per-test difference is what a plugin or fixture adds."""

from __future__ import annotations

import os
import statistics
import time

import pytest

_times: list[int] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter_ns()
    yield
    _times.append(time.perf_counter_ns() - start)


def pytest_unconfigure(config) -> None:
    out = os.environ.get("PER_TEST_OUT")
    if out and _times:
        with open(out, "a") as f:
            f.write(f"{statistics.median(_times) / 1000:.1f}\n")
