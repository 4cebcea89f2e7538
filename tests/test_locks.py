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


def _waiting_logged():
    """An event set when a lock's waiter says it waits (it opened the held file and found it locked)."""
    import logging

    waiting = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record):
            if "waiting for another process" in record.getMessage():
                waiting.set()

    logger = logging.getLogger("reprohub")
    handler, level = Seen(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return waiting, lambda: (logger.removeHandler(handler), logger.setLevel(level))


def test_a_waiter_on_a_file_renamed_away_locks_the_file_that_has_the_name_now(tmp_path):
    """A partial is its own lock and is renamed into place while held: the waiter, which opened the renamed
    file, must not go on holding it (two writers of one name); it locks the name's file instead."""
    import os

    from reprohub.fetch.locks import held_file

    partial, dst, seen = tmp_path / ".w.pt.incomplete", tmp_path / "w.pt", []
    waiting, stop_watching = _waiting_logged()

    def waiter():
        with held_file(partial, "writing w.pt") as lock:
            here, mine = os.lstat(partial), os.fstat(lock.fd)
            seen.append((here.st_ino == mine.st_ino, lock.names(partial), dst.read_bytes()))

    try:
        with held_file(partial, "writing w.pt") as lock:
            thread = threading.Thread(target=waiter)
            thread.start()
            assert waiting.wait(10), "the waiter must open the held file and wait on it"
            os.write(lock.fd, b"complete")
            os.replace(partial, dst)
        thread.join(10)
    finally:
        stop_watching()
    assert seen == [(True, True, b"complete")]


def test_a_fifo_or_link_planted_as_a_partial_is_removed_not_opened(tmp_path):
    import os

    from reprohub.fetch.partial import claim, is_being_written, remove_unheld, resumable_path

    dst, outside = tmp_path / "w.pt", tmp_path / "outside"
    outside.write_bytes(b"precious")
    os.mkfifo(resumable_path(dst))  # opening a FIFO for reading would hang until a writer came
    with claim(dst, "writing w.pt") as held:
        assert os.path.isfile(resumable_path(dst)) and os.fstat(held.fd).st_size == 0
    os.symlink(outside, resumable_path(dst))
    with claim(dst, "writing w.pt"):
        assert not os.path.islink(resumable_path(dst))
    assert outside.read_bytes() == b"precious" and list(tmp_path.iterdir()) == [outside]  # nothing left behind
    os.mkfifo(resumable_path(dst))  # and `cache prune` neither hangs on one nor takes it for a download running
    assert not is_being_written(dst) and remove_unheld(resumable_path(dst))
    assert list(tmp_path.iterdir()) == [outside]


def test_a_claimed_partial_survives_cache_prune_until_its_writer_is_gone(tmp_path, monkeypatch, capsys):
    import os

    from reprohub.cli import main
    from reprohub.fetch.partial import claim, resumable_path

    folder = tmp_path / "torch" / "hub" / "checkpoints" / "k"
    folder.mkdir(parents=True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    dst = folder / "w.pt"
    with claim(dst, "downloading w.pt") as held:
        os.write(held.fd, b"half of it")
        assert main(["cache", "prune"]) == 0 and resumable_path(dst).read_bytes() == b"half of it"
    assert main(["cache", "prune"]) == 0  # the writer died: its bytes are a leftover now
    assert not resumable_path(dst).exists() and "1 entry removed" in capsys.readouterr().out.splitlines()[-1]
