"""Trust, round four: what a hostile lock, a flaky network and a partial run must not get through.

Each test is one attack or one piece of bad luck: a lock whose values try to steer pip or the terminal,
a prune after a partial run, a signed URL in a failure report, a host that restarts or a resolver that
hiccups, a prefetch list that names a host the repo never used.
"""

import io
import socket
import threading
import time

import pytest
import torch

from reprohub import Hub
from reprohub.cli import EXIT_OK, main
from reprohub.errors import UntrustedRepoError
from reprohub.fetch import hosts
from reprohub.fetch.download import Downloader, DownloadPolicy
from reprohub.lock.lockfile import EnvironmentPin, GoldenPin, Lockfile
from reprohub.lock.session import LockSession
from reprohub.testing.server import HubServer

from .conftest import FAST_POLICY, run_locked, serve_repo
from .test_prefetch import HUBCONF, _weights

# -- 1. a lock-only pull request must not choose the package index ----------------------------------

INJECTED = {
    "a newline and its own index line": "1.0\n--index-url http://attacker.example/simple",
    "an option riding on the line": "2.4.6 --extra-index-url http://attacker.example/simple",
    "an environment marker": "2.4.6; python_version > '0'",
    "a URL": "@ http://attacker.example/numpy.whl",
}


def _lock_with_environment(tmp_path, values: dict) -> str:
    path = tmp_path / "hub.lock"
    Lockfile(goldens={"k": GoldenPin("k", "g/k.safetensors", "0" * 64, "e1")},
             environments={"e1": EnvironmentPin("e1", values)}).write(path)
    return str(path)


@pytest.mark.parametrize("version", INJECTED.values(), ids=INJECTED.keys())
def test_requirement_lines_refuse_a_version_that_is_not_pep_440(tmp_path, capsys, version):
    lock = _lock_with_environment(tmp_path, {"torch": "2.13.0", "numpy": version})
    assert main(["env", "--lock", lock, "--requirements"]) != EXIT_OK
    out, err = capsys.readouterr()
    assert out == ""  # not one line for pip to read
    assert "[environments.e1] values.numpy" in err and "PEP 440" in err
    assert "\n--index-url" not in err  # the refusal itself shows the value escaped


def test_requirement_lines_of_an_honest_lock_still_rebuild_the_stack(tmp_path, capsys):
    lock = _lock_with_environment(tmp_path, {"torch": "2.13.0+cpu", "numpy": "2.4.6", "dep timm": "1.0.3"})
    assert main(["env", "--lock", lock, "--requirements"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["--extra-index-url https://download.pytorch.org/whl/cpu",
                                                    "numpy==2.4.6", "timm==1.0.3", "torch==2.13.0+cpu"]
    odd = _lock_with_environment(tmp_path, {"torch": "2.13.0+evil.example"})  # a tag no index of ours serves
    assert main(["env", "--lock", odd, "--requirements"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["torch==2.13.0"]  # kept to what PyPI can have, no index line


# -- 5. terminal escapes and forged lines from the lock or a golden ---------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J"
FORGED = "\nreprohub: all goldens verified"


def _no_control(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text
    assert "\nreprohub: all goldens verified" not in text


def test_reprohub_env_shows_lock_values_escaped(tmp_path, capsys):
    lock = _lock_with_environment(tmp_path, {"torch": "2.13.0", "device": f"cpu{ESCAPES}{FORGED}",
                                             f"dep x{ESCAPES}": "1.0"})
    assert main(["env", "--lock", lock]) == EXIT_OK
    out = capsys.readouterr().out
    _no_control(out)
    assert "\\x1b]0;owned\\x07" in out and "\\nreprohub: all goldens verified" in out  # shown, not obeyed


def test_golden_show_and_diff_escape_the_golden_s_metadata(tmp_path, capsys):
    from reprohub.golden.engine import save_golden

    old, new = tmp_path / "old.safetensors", tmp_path / "new.safetensors"
    save_golden(old, {"y": torch.ones(3)}, {"commit": f"abc{ESCAPES}{FORGED}"})
    save_golden(new, {"y": torch.zeros(3)}, {"commit": f"abc{ESCAPES}{FORGED}"})
    main(["golden", "show", str(old)])
    main(["golden", "diff", str(old), str(new)])
    captured = capsys.readouterr()
    _no_control(captured.out + captured.err)
    assert "meta commit: abc\\x1b]0;owned" in captured.out


def test_the_pytest_header_and_summary_escape_lock_text(project, tiny_repo):
    project.makepyfile(test_it="def test_v1(hub):\n    assert hub.load('acme/tiny:v1', 'version') == 'v1'\n")
    run_locked(project, "--hub-update").assert_outcomes(passed=1)
    lock = Lockfile.read(project.path / "hub.lock")
    lock.environments["e1"] = EnvironmentPin("e1", {"torch": f"0.0{ESCAPES}{FORGED}"})
    lock.goldens[f"k{ESCAPES}"] = GoldenPin(f"k{ESCAPES}", "g/k.safetensors", "0" * 64, "e1")
    lock.write(project.path / "hub.lock")
    result = run_locked(project)
    text = "\n".join(result.outlines + result.errlines)
    _no_control(text)
    assert "torch 0.0\\x1b]0;owned" in text  # the header still says the stack moved, escaped
    assert "unused golden k\\x1b]0;owned" in text


# -- 2. prune only what a complete run shows unused -------------------------------------------------

THREE_GOLDENS = {
    "test_a": "def test_a(hub, golden):\n    hub.load('acme/tiny:v1', 'version')\n    golden.check(torch.ones(2))\n",
    "test_b": "def test_b(hub, golden):\n    golden.check(torch.ones(3), key='b/ones')\n",
    "test_c": "def test_c(hub, golden):\n    hub.load('acme/tiny:main', 'version')\n    golden.check(torch.ones(4))\n",
}


def _three(project, skip_c: bool = False):
    for name, body in THREE_GOLDENS.items():
        skip = "import pytest\n@pytest.mark.skip(reason='needs CUDA')\n" if skip_c and name == "test_c" else ""
        project.makepyfile(**{name: "import torch\n" + skip + body})


def _entries(project):
    lock = Lockfile.read(project.path / "hub.lock")
    return sorted(lock.goldens), sorted(lock.repos)


def test_prune_after_a_path_selection_keeps_the_entries_of_tests_that_did_not_run(project, tiny_repo):
    _three(project)
    run_locked(project, "--hub-update").assert_outcomes(passed=3)
    before = _entries(project)
    assert len(before[0]) == 3 and len(before[1]) == 2
    partial = run_locked(project, "test_a.py", "--hub-update", "--hub-prune")
    assert partial.ret != 0
    partial.stdout.fnmatch_lines(["*NOT written*--hub-prune*a selection of paths (test_a.py)*"])
    assert _entries(project) == before
    run_locked(project, ".", "--hub-update", "--hub-prune").assert_outcomes(passed=3)  # '.' is the whole suite
    assert _entries(project) == before


@pytest.mark.parametrize("how", ["skip", "xfail"])
def test_prune_after_a_skipped_or_xfailed_test_keeps_its_entries(project, tiny_repo, how):
    _three(project)
    run_locked(project, "--hub-update").assert_outcomes(passed=3)
    before = _entries(project)
    if how == "skip":
        _three(project, skip_c=True)
    else:
        project.makepyfile(test_c="import pytest, torch\n@pytest.mark.xfail(reason='flaky')\n" + THREE_GOLDENS["test_c"]
                           + "    assert False\n")
    partial = run_locked(project, "--hub-update", "--hub-prune")
    assert partial.ret != 0
    partial.stdout.fnmatch_lines(["*NOT written*--hub-prune*1 tests skipped, xfailed or failed (test_c.py::test_c)*"])
    assert _entries(project) == before


# -- 3. secrets in signed URLs never reach a failure report ----------------------------------------

SECRETS = {"X-Amz-Signature": "sig-5ecret-1", "X-Amz-Credential": "AKIA5ECRET2", "private_token": "glpat-5ecret3",
           "client_secret": "cs-5ecret4", "access-token": "at-5ecret5", "API-KEY": "ak-5ecret6", "Token": "tk-5ecret7"}

SIGNED_TESTS = '''
import requests, torch

URL = {url!r}

def test_load_through_hub(hub):
    hub.load_state_dict_from_url(URL, progress=False)

def test_repo_code_wraps_the_error(hub):
    try:
        torch.hub.load_state_dict_from_url(URL, progress=False)
    except Exception as err:
        raise RuntimeError("could not fetch the weights: " + str(err)) from err

def test_test_code_asks_requests_itself():
    requests.get(URL, timeout=5)
'''


def test_no_secret_query_value_appears_in_a_failed_run(project, server, monkeypatch):
    """An ``https://`` URL to a port that speaks plain HTTP: every request fails in the TLS handshake, and
    requests, urllib3 and reprohub each write the URL into their messages and frames."""
    query = "&".join(f"{name}={value}" for name, value in SECRETS.items())
    url = server.url.replace("http://", "https://") + f"/files/w.pth?{query}&v=1"
    monkeypatch.setenv("REPROHUB_RETRIES", "1")
    project.makepyfile(test_signed=SIGNED_TESTS.format(url=url))
    result = run_locked(project, "--hub-update", "-rA", "--tb=long", "--log-level=DEBUG", "-W", "always")
    result.assert_outcomes(failed=3)
    shown = "\n".join(result.outlines + result.errlines)
    assert "/files/w.pth?" in shown and "X-Amz-Signature=***" in shown  # the URL is still named
    leaked = [value for value in SECRETS.values() if value.lower() in shown.lower()]
    assert leaked == []


@pytest.mark.parametrize("road", ["requests", "direct"])
def test_a_download_error_s_chained_cause_is_redacted_too(server, road):
    from reprohub.fetch.transport import new_session

    url = server.url.replace("http://", "https://") + "/w.pth?X-Amz-Signature=s3cr3t&private_token=t0k3n"
    session = new_session() if road == "requests" else None  # a caller's session never takes the short road
    downloader = Downloader(session=session, policy=DownloadPolicy(retries=0, backoff=0.01))
    with pytest.raises(ConnectionError) as failure:
        downloader.fetch_into(url, io.BytesIO())
    chain, current = [], failure.value
    while current is not None:
        chain.append(f"{type(current).__name__}: {current} {current.args!r}")
        current = current.__cause__ or current.__context__
    text = "\n".join(chain)
    assert len(chain) >= 2 and "SSL" in text  # the TLS failure is named...
    if road == "requests":
        assert "Max retries exceeded" in text  # ...in requests' own words, where it went through requests
    assert "s3cr3t" not in text and "t0k3n" not in text  # ...without the secrets


# -- 4. one blip must not mark a host dead ----------------------------------------------------------

def _refusing_port():
    """A port that is bound but not listening (refuses every connection), held by the caller."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def _record_two(server, weights, tmp_path):
    """Record acme/two (served by ``server``, its two weight files by ``weights``): the lock to write, its
    path, and the first weight URL."""
    a, b = weights.add_file("backbone.pt", _weights(1000)), weights.add_file("head.pt", _weights(10))
    serve_repo(server, tmp_path, "acme/two", {"hubconf.py": HUBCONF.format(a=a, b=b)})
    path = tmp_path / "hub.lock"
    recording = LockSession(Lockfile(), str(path), update=True)
    hub = Hub(hub_dir=tmp_path / "rec", github_api_url=server.api_url, pins=recording, policy=FAST_POLICY)
    hub.recorder.listeners.append(recording.observe)
    assert hub.load("acme/two:main", "two") == 1010
    return recording.result(), path, a


def test_a_host_refusing_for_0_7_s_during_a_prefetch_is_asked_again_by_the_load(server, tmp_path, monkeypatch):
    """The weights host restarts while a locked cold load prefetches from it: the prefetch fails and marks
    nothing, and the entrypoint's own request waits for the host and passes."""
    weights = HubServer().start()
    port = weights.url.rsplit(":", 1)[1]
    lock, path, _ = _record_two(server, weights, tmp_path)
    lock.write(path)
    files = dict(weights.state.files)
    weights.stop()  # the host goes down...
    back = []

    def restart():
        time.sleep(0.7)
        again = HubServer(port=int(port))
        again.state.files.update(files)
        back.append(again.start())

    monkeypatch.setenv("REPROHUB_PREFETCH_HOSTS", "127.0.0.1")  # the weights host is another port
    threading.Thread(target=restart, daemon=True).start()  # ...and is back 0.7 s later
    try:
        session = LockSession(Lockfile.read(path), str(path))
        cold = Hub(hub_dir=tmp_path / "ci", github_api_url=server.api_url, pins=session, policy=FAST_POLICY)
        started = time.monotonic()
        assert cold.load("acme/two:main", "two") == 1010
        assert time.monotonic() - started >= 0.6  # it did meet the host while it was down
        assert back and back[0].hits("/files/backbone.pt") >= 1 and back[0].hits("/files/head.pt") >= 1
    finally:
        for again in back:
            again.stop()


def test_a_prefetch_s_failure_marks_no_host_and_a_load_s_is_remembered_only_for_a_while(monkeypatch):
    with _refusing_port() as gone:
        url = f"http://127.0.0.1:{gone.getsockname()[1]}/w.pt"
        slept = []
        downloader = Downloader(policy=FAST_POLICY, sleep=slept.append)
        with hosts.failures_not_remembered(), pytest.raises(ConnectionError, match="refused the connection 1 time"):
            downloader.fetch_into(url, io.BytesIO())
        assert slept == []  # a prefetch does not wait for the host: the load will
        hosts.check_alive(url)  # nothing remembered
        with pytest.raises(ConnectionError, match="refused the connection 4 times"):
            downloader.fetch_into(url, io.BytesIO())
        assert slept == list(hosts.REFUSED_WAITS)
        with pytest.raises(ConnectionError, match="earlier in this process; not asked again for [45] s"):
            hosts.check_alive(url)
        now = time.monotonic()
        monkeypatch.setattr(time, "monotonic", lambda: now + hosts.DEAD_FOR + 0.1)
        hosts.check_alive(url)  # remembered for a while, not for the session
        with pytest.raises(ConnectionError, match="refused"):
            downloader.fetch_into(url, io.BytesIO())  # gone again: remembered twice as long
        monkeypatch.setattr(time, "monotonic", lambda: now + 2 * hosts.DEAD_FOR + 0.2)
        with pytest.raises(ConnectionError, match="earlier in this process"):
            hosts.check_alive(url)


def test_a_transient_resolver_error_is_retried_not_taken_for_a_missing_name(server, monkeypatch):
    url = server.add_file("w.pt", b"weights").replace("127.0.0.1", "localhost")
    real, asked = socket.getaddrinfo, []

    def busy_resolver_once(host, *args, **kwargs):
        if host == "localhost":
            asked.append(host)
            if len(asked) == 1:
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", busy_resolver_once)
    buf = io.BytesIO()
    Downloader(policy=FAST_POLICY).fetch_into(url, buf)
    assert buf.getvalue() == b"weights" and len(asked) >= 2
    hosts.check_alive(url)  # and nothing remembered


# -- 6. smaller holes ----------------------------------------------------------------------------------

def test_a_prefetch_list_naming_another_host_sends_it_nothing(server, tmp_path, monkeypatch):
    """A lock edit adds a URL on another host to a repo's prefetch list (and pins it): a cold check run must not
    send that host a request no reviewed code makes, unless REPROHUB_PREFETCH_HOSTS allows it."""
    lock, path, a = _record_two(server, server, tmp_path)
    with HubServer() as elsewhere:
        planted = elsewhere.add_file("x.pt", b"x")
        lock.artifacts[planted] = type(lock.artifacts[a])(planted, __import__("hashlib").sha256(b"x").hexdigest(), 1)
        spec = "acme/two:main"
        lock.repos[spec] = lock.repos[spec].fetching(planted)
        lock.write(path)
        for name, allowed in (("ci", None), ("ci-allowed", "127.0.0.1")):
            if allowed:
                monkeypatch.setenv("REPROHUB_PREFETCH_HOSTS", allowed)
            session = LockSession(Lockfile.read(path), str(path))
            cold = Hub(hub_dir=tmp_path / name, github_api_url=server.api_url, pins=session, policy=FAST_POLICY)
            assert cold.load(spec, "two") == 1010
            cold.prefetcher.wait(cold._cache_place(planted, "x.pt"))
            assert elsewhere.hits("/files/x.pt") == (1 if allowed else 0)


def test_an_untrusted_repo_is_an_eoferror_as_torch_hub_s_prompt_without_a_terminal():
    with pytest.raises(EOFError):
        raise UntrustedRepoError("acme/x to be trusted", "no terminal", "trust it")
    assert issubclass(UntrustedRepoError, PermissionError)  # and still what it was


def test_a_large_lock_reads_its_toml_once_and_names_a_broken_entry_s_line():
    from reprohub.errors import LockfileError

    lock = Lockfile(goldens={f"k/{i}": GoldenPin(f"k/{i}", f"g/{i}.st", f"{i:064x}") for i in range(2000)})
    text = lock.dumps()
    assert Lockfile.loads(text) == lock
    broken = text.replace(f'sha256 = "{1500:064x}"', 'sha256 = "nope"')
    line = broken.splitlines().index('[goldens."k/1500"]') + 1
    with pytest.raises(LockfileError, match=rf"hub.lock line {line}, \[goldens.\"k/1500\"\]"):
        Lockfile.loads(broken)


@pytest.fixture
def project(pytester, server, monkeypatch):
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makefile(".ini", pytest="[pytest]\nhub_golden_dir = goldens\n")
    return pytester


# -- prune and counters that tell the truth ---------------------------------------------------------

def test_prune_deletes_the_golden_files_it_unpins_and_says_so(project, tiny_repo):
    _three(project)
    run_locked(project, "--hub-update").assert_outcomes(passed=3)
    gone = project.path / Lockfile.read(project.path / "hub.lock").goldens["b/ones"].file
    assert gone.is_file()
    (project.path / "test_b.py").unlink()  # the test is gone for good
    pruned = run_locked(project, "--hub-update", "--hub-prune")
    pruned.assert_outcomes(passed=2)
    pruned.stdout.fnmatch_lines(["pruned golden b/ones: deleted goldens/b/ones.safetensors"])
    assert not gone.exists() and "b/ones" not in Lockfile.read(project.path / "hub.lock").goldens
    assert len(list((project.path / "goldens").rglob("*.safetensors"))) == 2  # the others stay


def test_prune_never_deletes_outside_the_golden_folder(project, tiny_repo):
    _three(project)
    run_locked(project, "--hub-update").assert_outcomes(passed=3)
    outside = project.path / "precious.safetensors"
    outside.write_bytes(b"not yours")
    lock = Lockfile.read(project.path / "hub.lock")
    lock.goldens["planted"] = GoldenPin("planted", "precious.safetensors", "0" * 64)  # a hostile lock edit
    lock.write(project.path / "hub.lock")
    run_locked(project, "--hub-update", "--hub-prune").assert_outcomes(passed=3)
    assert outside.read_bytes() == b"not yours" and "planted" not in Lockfile.read(project.path / "hub.lock").goldens


def test_prune_without_update_is_a_usage_error(project):
    result = run_locked(project, "--hub-prune")
    assert result.ret == 4  # pytest's usage error
    assert "add --hub-update" in "\n".join(result.errlines)


def test_counters_count_environments_failed_goldens_and_unreachable_urls(project, tiny_repo, server, monkeypatch):
    gone = f"{server.url}/files/never-there.pt"
    project.makepyfile(test_count=f"""
import torch, pytest

def test_ok(hub, golden):
    hub.load('acme/tiny:v1', 'version')
    golden.check(torch.ones(2))

def test_moves(hub, golden):
    golden.check(torch.ones(3) * float(__import__('os').environ.get('SCALE', '1')), key='m/out')

def test_gone(hub):
    with pytest.raises(Exception):
        hub.load_state_dict_from_url({gone!r}, progress=False)
""")
    run_locked(project, "--hub-update").assert_outcomes(passed=3)
    monkeypatch.setenv("SCALE", "2")  # test_moves's output moves
    result = run_locked(project)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["goldens: 1 checked, 1 failed, 0 recorded, 0 changed, 0 unused",
                                 "unreachable: 1 checked, 0 recorded, 0 changed, 0 unused",
                                 "environments: 2 checked, 0 recorded, 0 changed, 0 unused"])  # one a golden
