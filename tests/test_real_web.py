"""Hermetic locks on the web as it is (issue 35): the current Hugging Face client on httpx2, names looked
up, mirrors that are really used, verify right after a recording, and clients that ask for a range.

The Hub look-alike (:mod:`reprohub.testing.hubhost`) answers as the Hub and its CDN do: ``resolve``
redirects to another host with a URL signed for one request that expires after a second."""

import os
import time
import urllib.request

import pytest

from reprohub.cli import EXIT_OK, main
from reprohub.lock.lockfile import Lockfile
from reprohub.testing.hubhost import HubLookalike

from .conftest import run_locked, serve_repo
from .test_hermetic import answerer_for, recorded_lock

HF_TEST = '''
from huggingface_hub import hf_hub_download


def test_timm_style_weights(hub):
    weights = hf_hub_download("acme/tiny-vit", "model.safetensors")
    assert open(weights, "rb").read() == b"w" * 200000
    config = hf_hub_download("acme/tiny-vit", "config.json")
    assert open(config).read() == '{"width": 7}'
'''

WEIGHTS = b"w" * 200000
HF1_PATH = os.environ.get("REPROHUB_TEST_HF1_PATH", "")  # huggingface_hub 1.x, installed beside (.ci/run)


def _hf_clients():
    yield pytest.param("", id="huggingface_hub-2.x")
    reason = ("huggingface_hub 1.x is not installed beside this one: pip install --no-deps --target DIR "
              "'huggingface_hub>=1,<2' and set REPROHUB_TEST_HF1_PATH=DIR (.ci/run does)")
    yield pytest.param(HF1_PATH, id="huggingface_hub-1.x",
                       marks=pytest.mark.skipif(not os.path.isdir(HF1_PATH or "/nonexistent"), reason=reason))


@pytest.mark.slow
@pytest.mark.parametrize("hf_path", _hf_clients())
def test_hf_hub_download_is_recorded_bundled_replayed_with_every_server_stopped_and_offline(
        pytester, tmp_path, monkeypatch, hf_path):
    host = HubLookalike({"acme/tiny-vit": {"model.safetensors": WEIGHTS, "config.json": b'{"width": 7}'}})
    host.__enter__()
    monkeypatch.setenv("HF_ENDPOINT", host.url)
    monkeypatch.delenv("HF_HUB_DISABLE_XET", raising=False)  # the plugin sets it
    if hf_path:
        monkeypatch.setenv("PYTHONPATH", hf_path + os.pathsep + os.environ.get("PYTHONPATH", ""))
    pytester.makepyfile(test_hf=HF_TEST)

    def on_machine(name):
        for var, folder in (("HF_HOME", "hf"), ("TORCH_HOME", "torch")):
            monkeypatch.setenv(var, str(tmp_path / name / folder))

    def run(*args):
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hub-lock", "hub.lock", *args)

    on_machine("author")
    recorded = run("--hub-update")
    recorded.assert_outcomes(passed=1)
    recorded.stdout.fnmatch_lines(["reprohub: set HF_HUB_DISABLE_XET=1 *"])
    text = (pytester.path / "hub.lock").read_text()
    assert f"HEAD {host.url}/acme/tiny-vit/resolve/main/model.safetensors" in text
    for secret in ("Signature", "Policy", "Expires", "Key-Pair-Id"):
        assert secret not in text
    assert main(["bundle", "--lock", str(pytester.path / "hub.lock"), str(tmp_path / "with a space" / "bundle")]) == EXIT_OK

    time.sleep(1.1)  # every signature has expired: a fresh machine re-walks the current chain
    on_machine("ci")
    run().assert_outcomes(passed=1)

    host.stop()  # the reviewer: the internet dark, the bundle beside (a path with a space)
    asked = len(host.requests)
    on_machine("reviewer")
    monkeypatch.setenv("REPROHUB_MIRROR", str(tmp_path / "with a space" / "bundle"))
    run().assert_outcomes(passed=1)
    monkeypatch.delenv("REPROHUB_MIRROR")
    run("--hub-offline").assert_outcomes(passed=1)  # from the reviewer's cache alone
    assert len(host.requests) == asked


LOOKUP = '''
import socket


def test_resolves(hub):
    socket.getaddrinfo("example.org", 443)
'''


def test_a_name_looked_up_under_offline_is_refused_and_named(pytester):
    Lockfile().write(pytester.path / "hub.lock")
    pytester.makepyfile(test_lookup=LOOKUP)
    for mode in (["--hub-offline"], []):
        result = run_locked(pytester, *mode)
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*a lookup of the name example.org *(asked at test_lookup.py:5)*"])
    pytester.makepyfile(test_lookup=LOOKUP.replace("example.org", "localhost"))
    run_locked(pytester, "--hub-offline").assert_outcomes(passed=1)  # loopback names stay allowed


def test_a_missing_or_non_bundle_mirror_is_refused_at_start(pytester, tmp_path, monkeypatch):
    Lockfile().write(pytester.path / "hub.lock")
    pytester.makepyfile(test_nothing="def test_nothing(hub):\n    pass\n")
    for place in (tmp_path / "with a space" / "nowhere", tmp_path):
        monkeypatch.setenv("REPROHUB_MIRROR", str(place))
        result = run_locked(pytester)
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*a mirror (REPROHUB_MIRROR*{place}*"])


def test_a_range_request_is_answered_206_with_exactly_those_bytes_of_the_pin(server, tmp_path):
    from reprohub.runtime.network import answering

    body = bytes(range(256)) * 400
    url = server.add_file("w.bin", body)
    lock = recorded_lock(tmp_path, server, url)
    before = len(server.requests)
    for modes in ({}, {"offline": True}):
        with answering(answerer_for(tmp_path, lock, **modes)):
            for asked, first, last in (("bytes=100-199", 100, 199), ("bytes=102300-", 102300, 102399),
                                       ("bytes=-10", 102390, 102399)):
                response = urllib.request.urlopen(urllib.request.Request(url, headers={"Range": asked}))
                assert response.status == 206 and response.read() == body[first:last + 1]
                assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(body)}"
    assert len(server.requests) == before


def test_verify_passes_right_after_a_recording_whose_code_downloads_into_its_folder(
        pytester, server, tmp_path, monkeypatch):
    from .test_prefetch import SILERO_LIKE

    url = server.add_file("vad.jit", b"VAD model" * 1000)
    serve_repo(server, tmp_path, "acme/silero", {"hubconf.py": SILERO_LIKE.format(url=url)})
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    pytester.makepyfile(test_silero="def test_vad(hub):\n    assert hub.load('acme/silero:main', 'vad')[:9] == b'VAD model'\n")
    run_locked(pytester, "--hub-update").assert_outcomes(passed=1)
    assert main(["verify", "--lock", str(pytester.path / "hub.lock")]) == EXIT_OK  # no MISSING artifact


def test_the_hub_lookalike_signs_each_redirect_and_expires_it():
    with HubLookalike({"acme/a": {"f.bin": b"x"}}, expiry=0.3) as host:
        import urllib.error

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):
                return None

        opener = urllib.request.build_opener(NoRedirect)
        locations = []
        for _ in range(2):
            with pytest.raises(urllib.error.HTTPError) as caught:
                opener.open(host.url + "/acme/a/resolve/main/f.bin")
            locations.append(caught.value.headers["Location"])
        assert locations[0] != locations[1] and urllib.request.urlopen(locations[0]).read() == b"x"
        time.sleep(0.4)
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(locations[1])
