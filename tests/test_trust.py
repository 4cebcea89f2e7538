"""trust_repo semantics, the trusted_list file, and CI without a terminal."""

import subprocess
import sys
import textwrap

import pytest

from reprohub.errors import UntrustedRepoError
from reprohub.cache.layout import CacheLayout
from reprohub.sources.trust import check_trust


@pytest.fixture
def layout(tmp_path, monkeypatch):
    monkeypatch.delenv("REPROHUB_TRUST", raising=False)
    return CacheLayout(tmp_path / "hub")


def test_check_without_terminal_is_a_clear_error_not_a_hang(layout, monkeypatch):
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(UntrustedRepoError) as info:
        check_trust(layout, "acme/tiny", "acme_tiny", "check")
    assert "trust_repo=True" in str(info.value) and "REPROHUB_TRUST=acme/tiny" in str(info.value)
    assert isinstance(info.value, PermissionError)


def test_true_trusts_and_remembers_in_torch_hub_format(layout):
    check_trust(layout, "acme/tiny", "acme_tiny", True)
    assert layout.trusted_list.read_text().splitlines() == ["acme_tiny"]
    check_trust(layout, "acme/tiny", "acme_tiny", "check", ask=lambda q: pytest.fail("must not ask"))


def test_false_always_asks_and_no_refuses(layout):
    check_trust(layout, "acme/tiny", "acme_tiny", True)
    with pytest.raises(UntrustedRepoError, match="answer 'n'"):
        check_trust(layout, "acme/tiny", "acme_tiny", False, ask=lambda q: "n")
    check_trust(layout, "acme/tiny", "acme_tiny", False, ask=lambda q: "yes")


def test_none_warns_and_loads(layout):
    with pytest.warns(UserWarning, match="not in your trusted list"):
        check_trust(layout, "acme/tiny", "acme_tiny", None)


def test_trusted_owners_env_and_pins(layout, monkeypatch):
    check_trust(layout, "pytorch/vision", "pytorch_vision", "check", ask=lambda q: pytest.fail("asked"))
    monkeypatch.setenv("REPROHUB_TRUST", "other/x, acme/*")
    check_trust(layout, "acme/tiny", "acme_tiny", "check", ask=lambda q: pytest.fail("asked"))
    monkeypatch.delenv("REPROHUB_TRUST")
    check_trust(layout, "evil/x", "evil_x", "check", pinned=True, ask=lambda q: pytest.fail("asked"))


def test_torch_hub_legacy_download_counts_as_trusted(layout):
    (layout.root / "acme_tiny_main").mkdir(parents=True)
    check_trust(layout, "acme/tiny", "acme_tiny", "check", legacy_folder="acme_tiny_main",
                ask=lambda q: pytest.fail("asked"))


def test_load_with_stdin_closed_fails_fast_in_a_subprocess(tmp_path, tiny_repo, server):
    script = textwrap.dedent(f"""
        import reprohub
        hub = reprohub.Hub(hub_dir={str(tmp_path / 'h')!r}, github_api_url={server.api_url!r})
        try:
            hub.load("acme/tiny:v1", "version")
        except reprohub.UntrustedRepoError as err:
            print("REFUSED", err)
    """)
    proc = subprocess.run([sys.executable, "-c", script], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in __import__("os").environ.items() if k != "REPROHUB_TRUST"})
    assert proc.stdout.startswith("REFUSED") and "trust_repo=True" in proc.stdout, proc.stderr
    assert server.hits("/acme/tiny/archive/") == server.hits("/api/repos/acme/tiny/zipball") == 0  # refused before any code


@pytest.mark.parametrize("after_power_loss", ["", "acme_ti", "other_x\nacme_tin"])
def test_a_list_lost_or_torn_by_a_power_loss_fails_closed(layout, monkeypatch, after_power_loss):
    """trusted_list is not flushed (torch.hub's is not either): what a power loss can leave -- an empty
    file, or the last line cut short -- must only ever make reprohub ask again, never trust more."""
    check_trust(layout, "acme/tiny", "acme_tiny", True)
    layout.trusted_list.write_text(after_power_loss)
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(UntrustedRepoError):
        check_trust(layout, "acme/tiny", "acme_tiny", "check")
    check_trust(layout, "acme/tiny", "acme_tiny", True)  # trusting it again mends the list
    assert "acme_tiny" in layout.trusted_list.read_text().splitlines()


def test_names_added_at_once_are_all_kept_each_once(layout):
    import threading

    names = [f"acme_m{i}" for i in range(8)]
    threads = [threading.Thread(target=check_trust, args=(layout, name.replace("_", "/"), name, True))
               for name in names * 2]  # each name twice, all at once
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(layout.trusted_list.read_text().splitlines()) == sorted(names)
