"""download_url_to_file / load_state_dict_from_url: the same results as torch.hub, safer defaults."""

import hashlib
import io
import os
import zipfile

import pytest
import torch
import torch.hub

import reprohub
from reprohub.errors import HashMismatchError


def saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture
def state():
    torch.manual_seed(0)
    return {"w": torch.randn(5, 3), "b": torch.arange(4)}


def test_download_url_to_file_same_bytes_as_torch_hub(server, tmp_path):
    body = os.urandom(300_000)
    url = server.add_file("w.bin", body)
    torch.hub.download_url_to_file(url, str(tmp_path / "t.bin"), progress=False)
    got = reprohub.download_url_to_file(url, str(tmp_path / "r.bin"), progress=False)
    assert (tmp_path / "t.bin").read_bytes() == (tmp_path / "r.bin").read_bytes() == body
    assert got.sha256 == hashlib.sha256(body).hexdigest()


def test_bad_hash_prefix_raises_runtime_error_in_both(server, tmp_path):
    url = server.add_file("w.bin", b"payload")
    with pytest.raises(RuntimeError, match="invalid hash value"):
        torch.hub.download_url_to_file(url, str(tmp_path / "t"), hash_prefix="0000", progress=False)
    with pytest.raises(RuntimeError, match="invalid hash value") as info:
        reprohub.download_url_to_file(url, str(tmp_path / "r"), hash_prefix="0000", progress=False)
    assert isinstance(info.value, HashMismatchError)
    assert not (tmp_path / "t").exists() and not (tmp_path / "r").exists()


def test_load_state_dict_from_url_matches_torch_hub(server, state, tmp_path):
    body = saved(state)
    prefix = hashlib.sha256(body).hexdigest()[:8]
    url = server.add_file(f"model-{prefix}.pt", body)
    ours = reprohub.load_state_dict_from_url(url, check_hash=True, progress=False)
    theirs = torch.hub.load_state_dict_from_url(url, model_dir=str(tmp_path / "t"), check_hash=True, progress=False)
    assert ours.keys() == theirs.keys() == state.keys()
    for key in state:
        assert torch.equal(ours[key], theirs[key]) and torch.equal(ours[key], state[key])


def test_check_hash_failure_matches_torch_hub(server, state, tmp_path):
    url = server.add_file("model-deadbeef.pt", saved(state))
    with pytest.raises(RuntimeError, match="invalid hash value"):
        torch.hub.load_state_dict_from_url(url, model_dir=str(tmp_path / "t"), check_hash=True, progress=False)
    with pytest.raises(RuntimeError, match="invalid hash value"):
        reprohub.load_state_dict_from_url(url, check_hash=True, progress=False)


def test_weights_only_by_default_with_explicit_opt_out(server, tmp_path):
    url = server.add_file("obj.pt", saved({"weights": torch.ones(1), "extra": Opaque()}))
    with pytest.raises(Exception, match="[Ww]eights only"):
        reprohub.load_state_dict_from_url(url, progress=False)
    loaded = reprohub.load_state_dict_from_url(url, progress=False, weights_only=False)
    assert isinstance(loaded["extra"], Opaque)


def test_file_name_and_model_dir_are_honoured(server, state, tmp_path):
    url = server.add_file("w.pt", saved(state))
    reprohub.load_state_dict_from_url(url, model_dir=str(tmp_path / "m"), file_name="renamed.pt", progress=False)
    assert (tmp_path / "m" / "renamed.pt").exists()


def test_legacy_zip_format_is_loaded(server, state, tmp_path):
    inner = tmp_path / "inner.pt"
    torch.save(state, inner, _use_new_zipfile_serialization=False)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.write(inner, "inner.pt")
    url = server.add_file("legacy.zip", buf.getvalue())
    loaded = reprohub.load_state_dict_from_url(url, progress=False)
    assert torch.equal(loaded["w"], state["w"])


def test_second_load_makes_no_request(server, state):
    url = server.add_file("w.pt", saved(state))
    reprohub.load_state_dict_from_url(url, progress=False)
    reprohub.load_state_dict_from_url(url, progress=False)
    assert server.hits("/files/w.pt") == 1


def test_default_cache_is_under_hub_dir_checkpoints(server, state):
    url = server.add_file("w.pt", saved(state))
    reprohub.load_state_dict_from_url(url, progress=False)
    checkpoints = os.path.join(reprohub.get_dir(), "checkpoints")
    found = [f for _, _, files in os.walk(checkpoints) for f in files if f == "w.pt"]
    assert found == ["w.pt"]


class Opaque:
    pass
