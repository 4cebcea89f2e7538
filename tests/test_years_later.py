"""The reviewer years later: a dead origin fails fast and points to the bundle; a vanished commit is named."""

import socket

import pytest

from reprohub import Hub
from reprohub.errors import DownloadError, SourceError
from reprohub.fetch.download import DownloadPolicy
from reprohub.lock.lockfile import ArtifactPin, Lockfile, RepoPin
from reprohub.lock.session import LockSession


def test_a_stopped_origin_fails_three_locked_loads_at_once_with_the_bundle_hint(tmp_path):
    # the origin is gone: a port that is bound but not listening refuses every connection (and, held
    # for the test, cannot become another test's server)
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        urls = [f"http://127.0.0.1:{gone.getsockname()[1]}/files/w{i}.pt" for i in range(3)]
        lock = Lockfile(artifacts={u: ArtifactPin(u, "a" * 64, 9) for u in urls})
        hub = Hub(hub_dir=tmp_path / "hub", pins=LockSession(lock, "hub.lock"), policy=DownloadPolicy())  # 5 retries
        slept = []
        hub.downloader._sleep = slept.append
        for url in urls:
            with pytest.raises(DownloadError, match=r"refused the connection 4 times.*pinned in the lock.*REPROHUB_MIRROR"):
                hub.fetch_artifact(url, progress=False)
    assert slept == [0.25, 0.5, 1.0]  # a restart's worth of quick tries for the first load; then known to be gone


def test_a_name_that_does_not_resolve_is_not_retried_and_is_remembered(tmp_path, monkeypatch):
    asked = []
    real = socket.getaddrinfo

    def no_such_name(host, *args, **kwargs):
        if host == "weights.origin.invalid":
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)  # no lookup leaves this machine
    hub = Hub(hub_dir=tmp_path / "hub", policy=DownloadPolicy())
    slept = []
    hub.downloader._sleep = slept.append
    for name in ("a.pt", "b.pt"):
        with pytest.raises(DownloadError, match="weights.origin.invalid does not resolve"):
            hub.fetch_artifact(f"http://weights.origin.invalid/{name}", progress=False)
    assert asked == ["weights.origin.invalid"] and slept == []


def test_timeouts_and_5xx_keep_their_retries(server, tmp_path):
    from reprohub.testing.server import Fault

    url = server.add_file("w.pt", b"fine in the end")
    server.inject("/files/w.pt", Fault("status", status=503), Fault("status", status=502))
    hub = Hub(hub_dir=tmp_path / "hub", policy=DownloadPolicy(backoff=0.01))
    hub.downloader._sleep = lambda s: None
    assert hub.fetch_artifact(url, progress=False).size == len(b"fine in the end")


def test_a_force_pushed_pin_is_named_with_both_ways_back(server, tiny_repo, tmp_path):
    spec = "acme/tiny:main"
    recorder = Hub(hub_dir=tmp_path / "a", github_api_url=server.api_url)
    pinned = recorder.resolve(spec, verbose=False)
    assert pinned.commit == tiny_repo.v2
    tiny_repo.reset_hard(tiny_repo.v1)  # main force-pushed back; v2 is gone from the host
    tiny_repo.git("reflog", "expire", "--expire=now", "--all")
    tiny_repo.git("gc", "--prune=now", "-q")
    server.state.zips.clear()
    lock = Lockfile({spec: RepoPin(spec, server.api_url, pinned.commit, pinned.tree_sha256)})
    hub = Hub(hub_dir=tmp_path / "b", github_api_url=server.api_url, pins=LockSession(lock, "hub.lock"))
    with pytest.raises(SourceError) as info:
        hub.resolve(spec, verbose=False)
    text = str(info.value)
    assert f"commit {tiny_repo.v2} of acme/tiny ({spec})" in text and "force-pushed" in text
    assert "REPROHUB_MIRROR" in text and "--hub-accept" in text and "check the spelling" not in text


def test_a_repo_that_does_not_exist_still_says_check_the_spelling(server, tmp_path):
    hub = Hub(hub_dir=tmp_path / "h", github_api_url=server.api_url)
    with pytest.raises(SourceError, match="check the spelling"):
        hub.resolve("acme/no-such-repo:" + "f" * 40, verbose=False, skip_validation=True)


SCALED_HUBCONF = """
dependencies = ["torch", "tinyscale"]

def scaled():
    import torch, tinyscale
    return lambda x: x * tinyscale.SCALE
"""

SCALED_TEST = """
import torch

def test_scaled(hub, golden):
    golden.check(hub.load("acme/scaled:main", "scaled")(golden.input(2, 3)))
"""


def install_tinyscale(site, version: str, scale: float) -> None:
    """A tiny installed distribution (a real .dist-info importlib.metadata reads) whose version is ours to move."""
    import shutil

    for old in site.glob("tinyscale-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"tinyscale-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tinyscale\nVersion: {version}\n")
    (site / "tinyscale.py").write_text(f"SCALE = {scale!r}\n")


@pytest.fixture
def scaled_project(pytester, server, tmp_path, monkeypatch):
    from .conftest import serve_repo

    site = tmp_path / "site"
    site.mkdir()
    install_tinyscale(site, "1.0", 1.0)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    serve_repo(server, tmp_path, "acme/scaled", {"hubconf.py": SCALED_HUBCONF})
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    pytester.makepyfile(test_scaled=SCALED_TEST)
    pytester.site = site
    return pytester


def test_the_environment_is_recorded_named_on_a_mismatch_enforced_and_rebuildable(scaled_project, capsys):
    from reprohub.cli import main

    from .conftest import run_locked

    run_locked(scaled_project, "--hub-update").assert_outcomes(passed=1)
    lock = Lockfile.read(scaled_project.path / "hub.lock")
    (env,) = lock.environments.values()
    golden = lock.goldens["acme/scaled/scaled/test_scaled.test_scaled"]
    assert golden.environment == env.id and env.values["dep tinyscale"] == "1.0"
    assert {"python", "torch", "torch build", "numpy", "device", "threads", "tf32 matmul"} <= set(env.values)
    assert not any("/" in v for v in env.values.values())  # versions and switches, never paths
    text = (scaled_project.path / "hub.lock").read_text()
    assert text.count("[environments.") == 1 and str(scaled_project.path) not in text

    lock.environments[env.id] = type(env)(env.id, {**env.values, "numpy": "0.0.1"})  # as if recorded elsewhere
    lock.write(scaled_project.path / "hub.lock")
    header = run_locked(scaled_project, "--co")
    header.stdout.fnmatch_lines(["reprohub: goldens were recorded in another environment: numpy 0.0.1 -> *"])
    lock.environments[env.id] = env
    lock.write(scaled_project.path / "hub.lock")
    install_tinyscale(scaled_project.site, "1.1", 1.0)  # the stack moved, the outputs did not
    run_locked(scaled_project).assert_outcomes(passed=1)
    strict = run_locked(scaled_project, "--hub-strict-env")
    strict.assert_outcomes(failed=1)
    strict.stdout.fnmatch_lines(["*environment golden*was recorded in (--hub-strict-env)*dep tinyscale 1.0 -> 1.1*"])

    install_tinyscale(scaled_project.site, "1.2", 2.0)  # a new version that changes the outputs
    changed = run_locked(scaled_project)
    changed.assert_outcomes(failed=1)
    changed.stdout.fnmatch_lines(["*the environment differs from the one recorded: dep tinyscale 1.0 -> 1.2; "
                                  "compared with the cross-environment floor rtol 1e-05, atol 1e-06*",
                                  "*leaves differ from the golden*"])

    assert main(["env", "--lock", str(scaled_project.path / "hub.lock"), "--requirements"]) == 0
    lines = capsys.readouterr().out.split()
    assert "tinyscale==1.0" in lines and any(line.startswith("torch==") for line in lines)
    assert main(["env", "--lock", str(scaled_project.path / "hub.lock")]) == 0
    assert "dep tinyscale" in capsys.readouterr().out


def test_a_malformed_environment_table_is_named(tmp_path):
    from reprohub.errors import LockfileError

    text = ('version = "2.0"\n[environments."abc"]\nvalues = 5\n')
    with pytest.raises(LockfileError, match="values as a table of strings.*line 2"):
        Lockfile.loads(text)
    with pytest.warns(UserWarning):  # a newer minor may add fields to it: ignored
        lock = Lockfile.loads('version = "2.9"\n[environments."abc"]\nvalues = {torch = "2.13.0"}\nfuture = 1\n')
    assert lock.environments["abc"].values == {"torch": "2.13.0"}


def test_a_dependency_name_that_is_no_distribution_is_recorded_as_such():
    from reprohub.golden.environment import capture, requirements

    env = capture(["numpy", "models/../x; rm -rf", "surely-not-installed-pkg"], "cpu")
    assert env["dep models/../x; rm -rf"] == "not installed (not a distribution name)"
    assert env["dep surely-not-installed-pkg"] == "not installed"
    assert requirements({"e": env}) == ["--extra-index-url https://download.pytorch.org/whl/cpu",  # torch 2.13.0+cpu
                                        f"numpy=={env['numpy']}", f"torch=={env['torch']}"]


def test_a_gone_host_names_the_bundle_beside_the_lock_and_never_suggests_accepting(tmp_path, monkeypatch):
    from reprohub.lock.bundle import INDEX

    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{gone.getsockname()[1]}"
        url = f"{host}/files/w.pt"
        lock = Lockfile(artifacts={url: ArtifactPin(url, "a" * 64, 9)},
                        repos={"acme/tiny:v1": RepoPin("acme/tiny:v1", f"{host}/api", "c" * 40, "v2:" + "0" * 64)})
        (tmp_path / "hub-bundle").mkdir()
        (tmp_path / "hub-bundle" / INDEX).write_text("{}")  # a reviewer unpacked the paper's bundle here
        session = LockSession(lock, str(tmp_path / "hub.lock"))
        hub = Hub(hub_dir=tmp_path / "hub", pins=session, policy=DownloadPolicy(retries=0))
        with pytest.raises(DownloadError) as weights:
            hub.fetch_artifact(url, progress=False)
        with pytest.raises(DownloadError) as repo:
            hub.load("acme/tiny:v1", "version", trust_repo=True, verbose=False)
    for failure in (weights, repo):
        assert f"REPROHUB_MIRROR={tmp_path / 'hub-bundle'}" in str(failure.value)
        assert "--hub-accept" not in str(failure.value)  # the host is gone: moving the pin cannot help


def test_an_offline_miss_is_torch_hub_s_urlerror_too_and_says_to_fill_the_cache_first(tmp_path):
    from urllib.error import URLError

    from reprohub.errors import OfflineError

    hub = Hub(hub_dir=tmp_path / "hub", offline=True)
    with pytest.raises(URLError) as failure:  # what a test written for torch.hub expects of a download
        hub.download_url_to_file("https://weights.example/w.pt", str(tmp_path / "w.pt"), progress=False)
    assert isinstance(failure.value, OfflineError) and isinstance(failure.value, FileNotFoundError)
    assert "offline" in failure.value.reason and "fill the cache first" in str(failure.value)
