"""Inter-process locks: exclusion between threads and processes, timeouts, and holders that die."""

import subprocess
import sys
import threading
import time

import pytest

from reprohub.errors import LockTimeoutError, ReprohubError
from reprohub.fetch.locks import file_lock, is_held


def test_a_second_holder_waits_and_times_out_with_an_error_that_names_the_lock(tmp_path, monkeypatch):
    lock, held, release = tmp_path / "w.pt.lock", threading.Event(), threading.Event()

    def holder():
        with file_lock(lock, "writing w.pt"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(10)
    monkeypatch.setenv("REPROHUB_LOCK_TIMEOUT", "0.2")
    with pytest.raises(LockTimeoutError, match="REPROHUB_LOCK_TIMEOUT") as caught:
        with file_lock(lock, "writing w.pt"):
            pytest.fail("two holders at once")
    assert isinstance(caught.value, ReprohubError) and str(lock) in str(caught.value)
    release.set()
    thread.join()
    with file_lock(lock, "writing w.pt"):  # free again
        assert is_held(lock)
    assert not is_held(lock)


def test_a_killed_holder_releases_the_lock_at_once(tmp_path):
    lock = tmp_path / "w.pt.lock"
    script = ("import sys, time; from reprohub.fetch.locks import file_lock\n"
              "with file_lock(sys.argv[1], 'x'):\n    print('held', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script, str(lock)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    assert is_held(lock)
    proc.kill()
    proc.wait()
    start = time.monotonic()
    with file_lock(lock, "writing w.pt"):
        assert time.monotonic() - start < 1
    assert lock.exists()  # the file stays: removing it would split waiters across two inodes


def test_probing_a_lock_that_was_never_taken_creates_nothing(tmp_path):
    assert not is_held(tmp_path / "never.lock") and list(tmp_path.iterdir()) == []
