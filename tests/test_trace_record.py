"""How a traced golden's call record is made and kept (issue 37's cost): part-by-part digests that catch every
edit, pooled copy memory that never overwrites a live tensor, and a capture that lets the forward pass free
its activations."""

from __future__ import annotations

import gc
import hashlib
import json
import weakref

import pytest
import torch
from blake3 import blake3
from safetensors import safe_open

from reprohub.errors import GoldenFileError
from reprohub.golden import arena
from reprohub.golden.arena import Arena
from reprohub.golden.calls import CallCapture, calls_path, load_calls
from reprohub.golden.engine import load_golden
from reprohub.golden.streamed import check_parts, write_parts
from reprohub.runtime.threads import beside

from .test_attribution import X, _check, _mlp


def _parts(tmp_path):
    tensors = {"a": torch.arange(6.0).view(2, 3), "b": torch.tensor([True, False]), "c": torch.zeros(0),
               "d": torch.arange(1000, dtype=torch.int64)}
    path = tmp_path / "r.safetensors"
    return path, write_parts(path, tensors, {"k": "v"}), tensors


def test_a_parts_file_is_plain_safetensors_and_reads_back_exactly(tmp_path):
    path, digest, tensors = _parts(tmp_path)
    check_parts(path, digest)
    with safe_open(str(path), framework="pt") as f:  # any reader's safetensors
        assert sorted(f.keys()) == ["out.a", "out.b", "out.c", "out.d"]
        assert torch.equal(f.get_tensor("out.d"), tensors["d"])
    leaves = load_golden(path).leaves
    assert all(torch.equal(leaves[f"out.{k}"], t) for k, t in tensors.items())
    size = int.from_bytes(path.read_bytes()[:8], "little")
    assert digest == hashlib.sha256(path.read_bytes()[:8 + size]).hexdigest()  # the digest is the header's
    listed = json.loads(json.loads(path.read_bytes()[8:8 + size])["__metadata__"]["part_blake3"])
    assert listed["out.d"] == blake3(tensors["d"].numpy().tobytes()).hexdigest()


@pytest.mark.parametrize("edit, named", [
    (lambda data, head: data.__setitem__(len(data) - 1, data[-1] ^ 1), "part out.d"),  # a bit of the last part
    (lambda data, head: data.__setitem__(head + 1, data[head + 1] ^ 1), "part out.a"),  # a bit of the first part
    (lambda data, head: data.extend(b"\0"), "bytes of data where the parts cover"),  # a byte appended
    (lambda data, head: data.__delitem__(slice(-8, None)), "bytes of data where the parts cover"),  # cut short
    (lambda data, head: data.__setitem__(20, data[20] ^ 1), "a header with sha256"),  # the header itself
    (lambda data, head: data.__delitem__(slice(4, None)), "no safetensors header"),
])
def test_every_edit_of_a_parts_file_is_named(tmp_path, edit, named):
    path, digest, _ = _parts(tmp_path)
    data = bytearray(path.read_bytes())
    edit(data, 8 + int.from_bytes(data[:8], "little"))
    path.write_bytes(bytes(data))
    with pytest.raises(GoldenFileError) as refused:
        check_parts(path, digest)
    assert named in refused.value.found and "re-record" in refused.value.fix


def test_a_record_written_before_part_digests_is_still_checked_whole(tmp_path):
    """Goldens recorded by earlier versions name ``calls_sha256``, the whole record file's digest."""
    _check(tmp_path, _mlp(), X, update=True)
    golden = tmp_path / "g" / "net" / "traced.safetensors"
    record = calls_path(golden)
    old = {"calls_sha256": hashlib.sha256(record.read_bytes()).hexdigest()}
    assert len(load_calls(golden, old).calls) == 6
    record.write_bytes(record.read_bytes() + b"\0")
    with pytest.raises(GoldenFileError, match="named by its golden"):
        load_calls(golden, old)
    with pytest.raises(GoldenFileError, match="a golden without a trace"):
        load_calls(golden, {})


def test_pooled_memory_is_reused_only_once_its_copies_are_gone(monkeypatch):
    monkeypatch.setattr(arena, "_pool", [])
    first = Arena()
    kept = first.copy(torch.full((4,), 7.0))
    first.close()
    second = Arena()
    other = second.copy(torch.full((4,), 9.0))  # the pooled block is held by `kept`: a new one is taken
    assert kept.tolist() == [7.0] * 4 and other.tolist() == [9.0] * 4
    assert kept.untyped_storage().data_ptr() != other.untyped_storage().data_ptr()
    second.close()
    block = kept.untyped_storage().data_ptr()
    del kept
    third = Arena()
    again = third.copy(torch.full((4,), 5.0))
    assert again.untyped_storage().data_ptr() == block  # free now: reused
    assert other.tolist() == [9.0] * 4


def test_copies_are_exact_for_every_layout_and_dtype():
    pool = Arena()
    sources = [torch.arange(12.0).view(3, 4).t(), torch.tensor([True, False, True]), torch.arange(5, dtype=torch.int8),
               torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last), torch.randn(3, dtype=torch.complex64),
               torch.randn(3, requires_grad=True), torch.ones(0)]
    for source in sources:
        copy = pool.copy(source)
        assert copy.is_contiguous() and not copy.requires_grad and copy.dtype == source.dtype
        assert torch.equal(copy, source.detach())
        assert copy.numel() == 0 or copy.data_ptr() % 64 == 0


def test_the_capture_lets_the_forward_pass_free_what_it_made():
    """Holding every original kept the activations alive, so each one took fresh (page-faulting) memory; the
    capture holds them weakly, and an id the allocator reuses is not mistaken for the tensor that had it."""
    capture = CallCapture(1 << 20)
    model = _mlp()
    hooks = capture.attach(model)
    with torch.no_grad():
        out = model(X)
    capture.detach(hooks)
    original = weakref.ref(out)
    del out
    assert original() is None
    first = torch.ones(3)
    named = capture._keep(capture.calls[0], first)
    reused_id = id(first)
    del first
    second = next(t for t in (torch.zeros(3) for _ in range(1000)) if id(t) == reused_id)
    assert capture._keep(capture.calls[0], second) != named  # a new tensor at the old address: stored anew


def test_a_trace_leaves_no_cycle_holding_its_copies(tmp_path):
    gc.collect()
    gc.disable()
    try:
        _check(tmp_path, _mlp(), X, update=True)
        assert all(arena._use_count(block) == alone for block, alone in arena._pool)  # freed without the collector
    finally:
        gc.enable()


def test_beside_raises_what_its_thread_raised_and_waits_for_it():
    done = []
    with pytest.raises(ValueError, match="from the thread"):
        with beside(lambda: (_ for _ in ()).throw(ValueError("from the thread"))):
            done.append("block")
    assert done == ["block"]
    with pytest.raises(KeyError):  # the block's own error wins
        with beside(lambda: (_ for _ in ()).throw(ValueError("later"))):
            raise KeyError("block")


def test_the_numbers_taken_during_the_trace_are_those_the_record_gives_back(tmp_path):
    """The companion's numbers come from the copies as they were made; read back from the file they must be
    the same text, as `reprohub golden trace` shows it."""
    from reprohub.golden.calls import text_path
    from reprohub.golden.text import calls_text

    _check(tmp_path, _mlp(), X, update=True)
    golden = tmp_path / "g" / "net" / "traced.safetensors"
    record = load_calls(golden, load_golden(golden).metadata)
    assert not record.summaries  # read back: nothing precomputed
    assert text_path(golden).read_text() == calls_text(record)
    assert "mean" in text_path(golden).read_text()
