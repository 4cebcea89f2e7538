"""What a new user trips on first: settings that can never work, read-only and pre-filled caches,
expired tokens, private CAs, presigned URLs, platforms without fdatasync."""

import hashlib
import importlib
import io
import os
import ssl
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler

import pytest
import torch

import reprohub
from reprohub import Hub
from reprohub.errors import CacheWriteError, DownloadError, SettingError
from reprohub.fetch.download import Downloader, DownloadPolicy
from reprohub.testing.server import QuietHTTPServer

from .conftest import FAST_POLICY


def test_an_api_url_without_a_scheme_fails_at_once_naming_the_variable(monkeypatch, tiny_repo):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", "localhost:9")
    with pytest.raises(SettingError, match="REPROHUB_GITHUB_API_URL.*'localhost:9'.*http://127.0.0.1:8000/api"):
        reprohub.load("acme/tiny:v1", "version")


def test_a_timeout_that_is_not_a_number_names_the_variable(monkeypatch):
    monkeypatch.setenv("REPROHUB_TIMEOUT", "abc")
    with pytest.raises(SettingError, match="REPROHUB_TIMEOUT as a number, found 'abc'"):
        DownloadPolicy.from_env()


@pytest.mark.slow
def test_an_unknown_hub_device_names_the_option(pytester):
    pytester.makepyfile("def test_x(hub_device):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--hub-device", "tpu")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--hub-device*naming devices torch knows*found 'tpu'*"])


def test_a_read_only_hub_dir_says_which_folder_and_what_to_do(read_only_folder, server, tiny_repo):
    hub = Hub(hub_dir=read_only_folder({}) / "hub", github_api_url=server.api_url, policy=FAST_POLICY)
    with pytest.raises(CacheWriteError, match="writable folder.*TORCH_HOME"):
        hub.load("acme/tiny:v1", "version")


def test_a_read_only_model_dir_that_holds_the_file_just_works(read_only_folder, server):
    body = io.BytesIO()
    torch.save({"w": torch.arange(3.0)}, body)
    url = server.add_file("w.pt", body.getvalue())
    shared = read_only_folder({"w.pt": body.getvalue()})
    state = reprohub.load_state_dict_from_url(url, model_dir=str(shared), progress=False)
    assert torch.equal(state["w"], torch.arange(3.0)) and server.hits("/files/w.pt") == 0


def test_weights_torch_hub_already_downloaded_are_used_offline(server, tmp_path):
    body = io.BytesIO()
    torch.save({"w": torch.ones(2)}, body)
    url = server.add_file("resnet-abcd.pt", body.getvalue())
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        torch.hub.load_state_dict_from_url(url, progress=False)  # lands in <hub>/checkpoints/resnet-abcd.pt
    finally:
        torch.hub._hub_dir = None
    server.stop()
    state = Hub(hub_dir=tmp_path / "hub", offline=True).load_state_dict_from_url(url, progress=False)
    assert torch.equal(state["w"], torch.ones(2))


def test_force_reload_repairs_an_edited_cached_tree(hub, tiny_repo):
    assert hub.load("acme/tiny:v1", "version") == "v1"
    (hub.last_repo.path / "tinynet" / "__init__.py").write_text("VERSION = 'edited by hand'\n")
    assert hub.load("acme/tiny:v1", "version", force_reload=True) == "v1"
    assert (hub.last_repo.path / "tinynet" / "__init__.py").read_text() == "VERSION = 'v1'\n"


def test_an_expired_token_is_dropped_for_public_repos(tmp_path, server, tiny_repo, caplog):
    server.refuse_token("expired")
    hub = Hub(hub_dir=tmp_path / "hub", github_api_url=server.api_url, token="expired", policy=FAST_POLICY)
    assert hub.load("acme/tiny", "version") == "v2"  # no ref: the API is asked for the default branch
    assert "refused GITHUB_TOKEN" in caplog.text


def test_presigned_urls_name_one_cached_file_and_one_lock_entry(server, hub):
    body = b"weights behind a presigned URL"
    url = server.add_file("w.bin", body)
    first = hub.fetch_artifact(url + "?X-Amz-Signature=aaa&X-Amz-Date=1&versionId=7", progress=False)
    second = hub.fetch_artifact(url + "?X-Amz-Signature=bbb&X-Amz-Date=2&versionId=7", progress=False)
    assert first.path == second.path and server.hits("/files/w.bin") == 1
    assert [a.url for a in hub.recorder.artifacts()] == [url + "?versionId=7"]


def test_urls_no_retry_can_fix_fail_at_once(tmp_path):
    sleeps = []
    downloader = Downloader(policy=FAST_POLICY, sleep=sleeps.append)
    with pytest.raises(DownloadError, match="InvalidURL|MissingSchema|InvalidSchema"):
        downloader.fetch("http://", tmp_path / "never-written", progress=False)
    assert list(tmp_path.iterdir()) == []  # no partial file left behind
    assert sleeps == []


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS file server on 127.0.0.1 with a certificate from a private CA (self-signed)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "w.bin").write_bytes(b"over tls")
    handler = lambda *a: SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"))  # noqa: E731
    httpd = QuietHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{httpd.server_address[1]}/w.bin", cert
    httpd.shutdown()
    httpd.server_close()


def test_ssl_cert_file_is_honoured_as_urllib_honours_it(tls_server, tmp_path, monkeypatch):
    url, cert = tls_server
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(DownloadError, match="SSL"):
        Downloader(policy=DownloadPolicy(retries=0)).fetch(url, tmp_path / "a", progress=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    got = Downloader(policy=DownloadPolicy(retries=0)).fetch(url, tmp_path / "b", progress=False)
    assert got.sha256 == hashlib.sha256(b"over tls").hexdigest()


def test_requests_ca_bundle_wins_over_ssl_cert_file(tls_server, tmp_path, monkeypatch):
    url, cert = tls_server
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "not-this-one.pem"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    got = Downloader(policy=DownloadPolicy(retries=0)).fetch(url, tmp_path / "b", progress=False)
    assert got.sha256 == hashlib.sha256(b"over tls").hexdigest()


def test_platforms_without_fdatasync_flush_with_fsync(server, tmp_path, monkeypatch):
    from reprohub.fetch import pump

    monkeypatch.delattr(os, "fdatasync")
    importlib.reload(pump)
    try:
        assert pump._flush_data is os.fsync
        body = os.urandom(40 << 20)  # large enough for the pipelined pump and its periodic flush
        got = Downloader(policy=FAST_POLICY).fetch(server.add_file("big.bin", body), tmp_path / "big", progress=False)
        assert got.sha256 == hashlib.sha256(body).hexdigest()
    finally:
        monkeypatch.undo()
        importlib.reload(pump)


def test_file_urls_work_as_in_torch_hub_and_offline(tmp_path):
    source = tmp_path / "w.pt"
    torch.save({"w": torch.ones(3)}, source)
    torch.hub.download_url_to_file(source.as_uri(), str(tmp_path / "theirs.pt"), progress=False)
    got = reprohub.download_url_to_file(source.as_uri(), str(tmp_path / "ours.pt"), progress=False)
    assert (tmp_path / "ours.pt").read_bytes() == (tmp_path / "theirs.pt").read_bytes()
    assert got.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    state = Hub(hub_dir=tmp_path / "hub", offline=True).load_state_dict_from_url(source.as_uri(), progress=False)
    assert torch.equal(state["w"], torch.ones(3))
