"""pytest plugin: ``pytest --hub-lock hub.lock`` pins hub loads and checks golden outputs.

Registered through the ``pytest11`` entry point; loading it never imports torch.

Options (each also an ini setting without the dashes, ``hub_lock = hub.lock``)::

    --hub-lock PATH       resolve every hub load through this lockfile
    --hub-update          record new or changed entries and goldens, rewrite the lock at the end
    --hub-offline         no network at all; a cache miss fails with the prefetch command
    --hub-refresh         re-resolve locked refs, run against the new commits, report what moved
    --hub-accept          accept a moved ref: refresh, re-record the goldens that changed, write the lock
    --hub-trust PATTERNS  repos that may run while recording (owner/repo,owner/*,all; ini: hub_trust)
    --hub-strict-unused   lock entries no test used are an error, not a warning
    --hub-device LIST     devices for tests that take the ``hub_device`` fixture (cpu,cuda)
    --hub-mirror LOC      a bundle tried before the origin for pinned content (repeatable)
    --hub-variant         with --hub-update: record goldens as this machine class's variant
    --hub-report PATH     a self-contained HTML report of failed and changed goldens

Every HTTP(S) request a locked test makes -- repo code, test code, any library through urllib, requests
or httpx -- is pinned in the lock, replayed and fenced like torch.hub's downloads
(:mod:`reprohub.lock.hermetic`; ini ``hub_hermetic = false`` turns that off).

With ``$GITHUB_STEP_SUMMARY`` set (GitHub Actions), a Markdown summary of the session is appended to it.

Fixtures: ``hub`` (session: a :class:`~reprohub.hub.Hub` bound to the lock and
options), ``golden`` (``golden.check(output, key=None, rtol=None, atol=None)``),
``hub_device`` (a ``torch.device``; CUDA cases skip with a reason when no GPU).

Example test::

    def test_tiny_mlp(hub, golden, hub_device):
        model = hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True).to(hub_device).eval()
        golden.check(model(golden.input(4, 3, device=hub_device)))
"""

from __future__ import annotations

import contextlib
import os
import shlex
from pathlib import Path

import pytest

from .api import default_hub_override
from .errors import ReprohubError, SettingError
from . import settings
from .fetch.fsutil import atomic_write_bytes
from .redact import printable, redact_text
from .golden.checker import GoldenChecker, test_key  # noqa: F401  (test_key: re-exported)
from .golden.store import GoldenStore
from .hub import Hub
from .runtime import fence, network
from .runtime.intercept import routed
from .lock.beside import prune_beside, write_beside
from .lock.hermetic import RequestAnswerer
from .lock.lockfile import Lockfile
from .lock.session import LockSession

WORKER_KEY = "reprohub"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reprohub", "reprohub: pinned torch hub loads and golden outputs")
    group.addoption("--hub-lock", metavar="PATH", default=None,
                    help="resolve every hub load through this lockfile (ini: hub_lock)")
    group.addoption("--hub-update", action="store_true", help="record new or changed entries and goldens; "
                    "rewrite the lock at the end of the session")
    group.addoption("--hub-offline", action="store_true", help="no network at all; missing cache entries fail")
    group.addoption("--hub-refresh", action="store_true", help="re-resolve locked refs to what they point to now "
                    "and report what changed (with --hub-update: write the new commits if everything passed)")
    group.addoption("--hub-accept", action="store_true",
                    help="accept what moved refs now give: refresh, re-record changed goldens (their differences "
                         "are shown), and write the lock if every test passed")
    group.addoption("--hub-trust", metavar="PATTERNS", default=None,
                    help="repos that may run code while recording a lock: owner/repo,owner/* or all "
                         "(ini: hub_trust); repos pinned in the lock are always trusted")
    group.addoption("--hub-prune", action="store_true",
                    help="with --hub-update: drop lock entries no test used (only from a green run of every test)")
    group.addoption("--hub-report", metavar="PATH", default=None,
                    help="write a self-contained HTML report of failed and changed goldens (tables, and pictures of "
                         "where each output moved)")
    group.addoption("--hub-variant", action="store_true",
                    help="with --hub-update: record goldens as the variant of this machine's class (CPU kernel "
                         "capability or CUDA compute capability), leaving other classes' goldens as they are")
    group.addoption("--hub-strict-env", action="store_true",
                    help="a golden recorded in another environment (torch, numpy, device, a hubconf dependency) "
                         "fails even if its values match (ini: hub_strict_env)")
    group.addoption("--hub-strict-unused", action="store_true",
                    help="fail the session when lock entries were not used by any selected test")
    group.addoption("--hub-mirror", metavar="LOCATION", action="append", default=None,
                    help="a bundle (folder, file:// or http(s):// URL) tried before the origin for pinned content; "
                         "repeatable (ini: hub_mirror; default $REPROHUB_MIRROR)")
    group.addoption("--hub-device", metavar="LIST", default=None,
                    help="comma-separated devices for tests using the hub_device fixture (default: cpu)")
    parser.addini("hub_lock", "path of the hub lockfile (like --hub-lock)", default="")
    parser.addini("hub_hermetic", "pin, replay and fence every HTTP(S) request a locked test makes (urllib, "
                  "requests, httpx...), not only torch.hub's downloads", type="bool", default=True)
    parser.addini("hub_unpinned_hosts", "hosts whose requests go to the network unpinned (a test's own servers): "
                  "name or name:port, one per line", type="linelist", default=[])
    parser.addini("hub_trust", "repos that may run while recording (like --hub-trust)", type="linelist", default=[])
    parser.addini("hub_api_url", "GitHub-compatible API base URL (default $REPROHUB_GITHUB_API_URL or GitHub's)",
                  default="")
    parser.addini("hub_golden_dir", "folder of golden files, relative to the rootdir", default="fixtures/goldens")
    parser.addini("hub_device", "default for --hub-device", default="cpu")
    parser.addini("hub_mirror", "bundle locations tried before the origin (like --hub-mirror)", type="linelist",
                  default=[])
    parser.addini("hub_strict_env", "any difference from a golden's recorded environment fails (like "
                  "--hub-strict-env)", type="bool", default=False)
    parser.addini("hub_cross_env_rtol", "rtol floor applied only where the environment differs from the "
                  "golden's (another torch, numpy, device or dependency)", default="1e-5")
    parser.addini("hub_cross_env_atol", "atol floor applied only where the environment differs", default="1e-6")
    parser.addini("hub_cross_device_rtol", "rtol floor when comparing GPU outputs with CPU goldens", default="1e-4")
    parser.addini("hub_cross_device_atol", "atol floor when comparing GPU outputs with CPU goldens", default="1e-5")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hub_device(name): run this test on the named device only")
    config.pluginmanager.register(HubPlugin(config), "reprohub-state")


def _state(config: pytest.Config) -> "HubPlugin":
    return config.pluginmanager.get_plugin("reprohub-state")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hub_device" in metafunc.fixturenames:
        devices = _state(metafunc.config).devices
        marker = metafunc.definition.get_closest_marker("hub_device")
        if marker is not None:
            devices = [d for d in devices if d == marker.args[0]] or [marker.args[0]]
        metafunc.parametrize("hub_device", devices, indirect=True, ids=devices)


@pytest.fixture(scope="session")
def hub(request: pytest.FixtureRequest) -> Hub:
    """The loader bound to the lock and options: ``hub.load/list/help`` as ``reprohub.load/list/help``."""
    return _state(request.config).hub


@pytest.fixture
def hub_device(request: pytest.FixtureRequest):
    """The torch.device this test runs on (from --hub-device); CUDA skips cleanly without a GPU."""
    import torch

    name = getattr(request, "param", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingError("--hub-device (or the hub_device ini key) naming devices torch knows, e.g. cpu,cuda,cuda:1",
                           repr(name), "fix the device list; torch.device() must accept each name") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{name} requested (--hub-device) but torch.cuda.is_available() is False on this machine")
    return device


@pytest.fixture
def golden(request: pytest.FixtureRequest, hub: Hub):
    """Compare outputs with recorded goldens: ``golden.check(output, key=None, rtol=None, atol=None)``."""
    hub.last_load = hub.last_repo = None  # "the last load" means the last one in this test
    hub.last_nested = ()
    # the test's tmp_path only if an obtained file is written (making one costs ~3 ms a test)
    checker = GoldenChecker(_state(request.config).golden_store, hub, lambda: request.getfixturevalue("tmp_path"),
                            request.node.nodeid)
    with checker.deterministic():
        yield checker


def _short_report(item: pytest.Item, excinfo) -> str:
    error = excinfo.value
    own = [entry for entry in excinfo.traceback if Path(str(entry.path)) == Path(str(item.path))]
    where = ""
    if own:
        entry = own[-1]
        where = f"{item.location[0]}:{entry.lineno + 1}: in {item.name}\n    {str(entry.statement).strip()}\n"
    return f"{where}{type(error).__module__}.{type(error).__name__}: {error}"


def _fail_for(report: pytest.TestReport, fenced: list[str]) -> None:
    """Fail a test for the requests a locked run refused it (:mod:`reprohub.lock.hermetic`)."""
    text = "\n".join(f"reprohub refused {what}" for what in dict.fromkeys(fenced))
    if report.passed:
        report.outcome, report.longrepr = "failed", text
    else:
        report.sections.append(("reprohub: refused requests", text))


def _redact_report(report: pytest.TestReport) -> None:
    """A failure report with every secret query value and URL password masked (:mod:`reprohub.redact`):
    the messages of chained causes and the arguments pytest prints for each frame (urllib3's ``url``)
    carry the signed URL a test asked for.  Rendered to text only where it holds one."""
    text = str(report.longrepr) if report.longrepr is not None else ""
    cleaned = redact_text(text)
    if cleaned != text:
        report.longrepr = cleaned
    report.sections = [(title, redact_text(content)) for title, content in report.sections]


class HubPlugin:
    """Session state and hooks; lock-specific behaviour only when a lock is configured."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        option = config.getoption
        lock = option("hub_lock") or config.getini("hub_lock") or None
        self.lock_path = Path(config.rootpath, lock) if lock and not os.path.isabs(lock) else (Path(lock) if lock else None)
        self.accept = option("hub_accept")
        self.update, self.refresh = option("hub_update") or self.accept, option("hub_refresh") or self.accept
        self.offline, self.strict_unused = option("hub_offline"), option("hub_strict_unused")
        if option("hub_prune") and not self.update:
            raise pytest.UsageError("--hub-prune drops lock entries only while recording: add --hub-update "
                                    "(pytest --hub-lock hub.lock --hub-update --hub-prune)")
        self.devices = [d.strip() for d in (option("hub_device") or config.getini("hub_device")).split(",") if d.strip()]
        self.is_worker = hasattr(config, "workerinput")
        self.session = self._lock_session()
        self.outcomes: dict[str, str] = {}
        self.deselected = 0
        self.written: bool | None = None
        self.pruned: list[str] = []  # the golden files a prune deleted, as summary lines
        self.write_error: str | None = None
        self.versions: dict[str, str] = {}  # installed distributions' versions, looked up once a session
        self._hub: Hub | None = None
        self.hermetic = self.session is not None and config.getini("hub_hermetic")
        self._answerer = None
        if self.hermetic:  # once a session; each test only sets its answerer
            network.install()
            fence.install_hook()

    def _lock_session(self) -> LockSession | None:
        if self.lock_path is None:
            return None
        try:
            lock = Lockfile.read(self.lock_path)
        except ReprohubError as err:
            raise pytest.UsageError(str(err)) from None
        if not self.lock_path.exists() and not self.update:
            raise pytest.UsageError(f"--hub-lock {self.lock_path}: no such file. Create it with "
                                    f"`pytest --hub-lock {self.lock_path} --hub-update`.")
        return LockSession(lock, str(self.lock_path), update=self.update, refresh=self.refresh, accept=self.accept)

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            mirrors = self.config.getoption("hub_mirror") or [
                m if "://" in m else str(Path(self.config.rootpath, m)) for m in self.config.getini("hub_mirror")
            ] or None
            trust = self.config.getoption("hub_trust") or ",".join(self.config.getini("hub_trust")) or None
            self._hub = Hub(offline=True if self.offline else None, pins=self.session, refresh=self.refresh,
                            mirrors=mirrors, trust=trust, github_api_url=self.config.getini("hub_api_url") or None)
            if self.session is not None:
                self._hub.recorder.listeners.append(self.session.observe)
        return self._hub

    @property
    def golden_store(self) -> GoldenStore:
        ini = self.config.getini
        cross = (float(ini("hub_cross_device_rtol")), float(ini("hub_cross_device_atol")))
        cross_env = (float(ini("hub_cross_env_rtol")), float(ini("hub_cross_env_atol")))
        strict_env = self.config.getoption("hub_strict_env") or ini("hub_strict_env")
        lock_dir = self.lock_path.parent if self.lock_path else self.config.rootpath
        return GoldenStore(Path(self.config.rootpath, ini("hub_golden_dir")), lock_dir, self.session,
                           update=self.update, refresh=self.refresh, cross_device=cross,
                           accept_command=self.accept_command(), accept=self.accept, cross_env=cross_env,
                           strict_env=strict_env, versions=self.versions,
                           variant=bool(self.config.getoption("hub_variant")))

    def accept_command(self) -> str:
        lock = f" --hub-lock {shlex.quote(str(self.lock_path))}" if self.lock_path else ""
        return f"pytest{lock} {'--hub-accept' if self.refresh else '--hub-update'}"

    # -- hooks ------------------------------------------------------------------------------------

    def pytest_report_header(self, config: pytest.Config) -> list[str] | None:
        if self.session is None:
            return None
        import torch

        counts = ", ".join(f"{n} {t}" for t, n in self.session.lock.entry_count().items())
        mode = "accept" if self.accept else "refresh" if self.refresh else "update" if self.update else "check"
        mode += " + update" if self.refresh and self.update and not self.accept else ""
        mirrors = f"; mirrors {', '.join(self.hub.mirrors.bases)}" if self.hub.mirrors else ""
        lines = [f"reprohub: lock {self.lock_path} ({counts}); mode {mode}; "
                 f"{'offline' if self.offline else 'online'}{mirrors}; torch {torch.__version__}; "
                 f"CUDA {'available' if torch.cuda.is_available() else 'not available'}"]
        moved = self._stack_moved()
        if moved:
            lines.append(f"reprohub: goldens were recorded in another environment: {'; '.join(moved)}")
        return [printable(line) for line in lines]  # values from the lock are shown, never obeyed

    def _stack_moved(self) -> list[str]:
        """How this process's stack differs from the environments the lock's goldens were recorded in
        (what the header can know: dependencies and the device are compared per golden)."""
        from .golden.environment import capture, differences

        current = capture()
        moved: set[str] = set()
        for pin in self.session.lock.environments.values():
            shared = {k: v for k, v in pin.values.items()  # the golden fixture sets deterministic mode itself
                      if k in current and k not in ("device", "deterministic algorithms")}
            moved.update(differences(shared, {k: current[k] for k in shared}))
        return sorted(moved)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item):
        if self.session is None:
            yield
            return
        self.session.current_test = item.nodeid
        answering = network.answering(self.answerer) if self.hermetic else contextlib.nullcontext()
        with default_hub_override(self.hub), routed(self.hub, import_torch=False), answering:
            yield
        self.session.current_test = None

    @property
    def answerer(self) -> RequestAnswerer:
        """What answers the HTTP(S) requests of a test (:mod:`reprohub.lock.hermetic`)."""
        if self._answerer is None:
            hub = self.hub
            self._answerer = RequestAnswerer(self.session, hub.layout, hub.downloader, hub.mirrors,
                                             lambda: hub.running_repo, offline=hub.offline,
                                             unpinned_hosts=self.config.getini("hub_unpinned_hosts"))
        return self._answerer

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.hermetic:
            network.uninstall()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """A reprohub error inside a test reads as the test's line and the error, not 50 lines of internals."""
        outcome = yield
        report = outcome.get_result()
        error = call.excinfo.value if call.excinfo is not None else None
        if report.failed and isinstance(error, ReprohubError):
            report.longrepr = _short_report(item, call.excinfo)
        if report.when == "call" and self.session is not None and item.nodeid in self.session.fenced:
            _fail_for(report, self.session.fenced.pop(item.nodeid))  # refused, even where repo code caught it
        if report.failed:
            _redact_report(report)

    def pytest_deselected(self, items) -> None:
        self.deselected += len(items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed or (report.when == "call" and report.passed) or report.skipped:
            previous = self.outcomes.get(report.nodeid)
            if previous != "failed":
                self.outcomes[report.nodeid] = report.outcome

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node, error) -> None:
        data = getattr(node, "workeroutput", {}).get(WORKER_KEY)
        if data is not None and self.session is not None:
            self.session.absorb(data["session"])
            self.deselected += data["deselected"]

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.session is None:
            return
        if self.is_worker:
            self.config.workeroutput[WORKER_KEY] = {"session": self.session.export(), "deselected": self.deselected}
            return
        failed = sum(1 for outcome in self.outcomes.values() if outcome == "failed")
        if self.session.conflicts and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.update and failed == 0 and not self.session.conflicts and session.exitstatus == 0:
            try:  # never a lock from a failed session; merged with the lock on disk at write time
                result = self._result()
                # the answers beside the lock first: a lock on disk never names one that is not there yet
                beside = write_beside(result, self.lock_path, self.hub.layout)
                self.written = result.write(self.lock_path, base=self.session.lock)
                if self.config.getoption("hub_prune"):
                    self.pruned = self.golden_store.delete_unpinned(self.session.lock, result)
                    beside += prune_beside(result, self.lock_path)
                self.pruned += beside
            except ReprohubError as err:
                self.write_error = str(err)
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        unused = self.deselected == 0 and any(self.session.unused().values())
        if self.strict_unused and unused and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _result(self) -> Lockfile:
        """The lock to write: this run's records merged in, and with --hub-prune the unused entries dropped."""
        result = self.session.result()
        if not self.config.getoption("hub_prune"):
            return result
        partial = self._partial_run()  # (--hub-prune without --hub-update was refused when the session began)
        if partial:
            raise ReprohubError("--hub-prune with --hub-update on a complete run (every test selected, run and "
                                "passed)", partial,
                                "nothing was written; run the whole suite where every test can run: "
                                "pytest --hub-lock LOCK --hub-update --hub-prune (or drop --hub-prune)")
        return result.without(self.session.unused())

    def _partial_run(self) -> str | None:
        """Why this run cannot show which entries are unused (a test that did not run may pin the rest), or None."""
        if self.deselected:
            return f"{self.deselected} deselected tests"
        selection = self._path_selection()
        if selection:
            return f"a selection of paths ({', '.join(selection)}): the other tests did not run"
        not_run = sorted(test for test, outcome in self.outcomes.items() if outcome != "passed")
        if not_run:
            shown = ", ".join(not_run[:3]) + (f" and {len(not_run) - 3} more" if len(not_run) > 3 else "")
            return f"{len(not_run)} tests skipped, xfailed or failed ({shown}): what they pin is unknown"
        return None

    def _path_selection(self) -> list[str]:
        """The command-line paths that select part of the suite (``test_a.py``, ``tests/x.py::test_y``): a path
        covers the suite only when it is a folder holding the rootdir or every one of ``testpaths``."""
        config = self.config
        if config.args_source != pytest.Config.ArgsSource.ARGS:
            return []
        roots = [Path(config.rootpath, p).resolve() for p in config.getini("testpaths")] or [config.rootpath.resolve()]
        partial = []
        for arg in config.args:
            path = Path(config.invocation_params.dir, arg).resolve()
            if "::" in arg or not path.is_dir() or not all(root == path or path in root.parents for root in roots):
                partial.append(arg)
        return partial

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if self.session is None or self.is_worker:
            return
        from .lock.report import summary_lines

        terminalreporter.section("reprohub")
        lines = [printable(redact_text(line)) for line in summary_lines(
            self.session, self.outcomes, self.deselected, self.written, self.strict_unused, self.update,
            self.refresh, self.write_error, self.hub.layout) + self.pruned]
        for line in lines:
            terminalreporter.write_line(line)
        for written in self._write_reviews(lines):
            terminalreporter.write_line(written)

    def _write_reviews(self, lines: list[str]) -> list[str]:
        """The CI job's summary (appended to ``$GITHUB_STEP_SUMMARY`` when set) and ``--hub-report``'s HTML page."""
        from .golden.review import html, markdown

        reviews, said = self.session.reviews, []
        summary_file = settings.read(settings.GITHUB_STEP_SUMMARY)
        if summary_file:
            with open(summary_file, "a", encoding="utf-8") as out:  # the runner's file: appended, as GitHub asks
                out.write(markdown(reviews, lines, self.accept_command()))
        report = self.config.getoption("hub_report")
        if report:
            path = Path(self.config.invocation_params.dir, report)
            atomic_write_bytes(path, html(reviews, lines, self.accept_command()).encode("utf-8"))
            said.append(f"report: {path} ({len(reviews)} goldens failed or changed)")
        return said
