"""``HubPlugin``: the state of one pytest session under reprohub, and its per-test hooks."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from ..api import default_hub_override
from ..errors import ReprohubError
from ..redact import printable
from ..golden.store import GoldenStore
from ..hub import Hub
from ..runtime import fence, network
from ..runtime.intercept import routed
from ..lock.beside import prune_beside, write_beside
from ..lock.hermetic import RequestAnswerer
from ..lock.lockfile import Lockfile
from ..lock.session import LockSession
from ..runtime.threads import attribute_threads
from .finish import LockWriting
from .reports import SummaryHooks, fail_for, redact_report, short_report

WORKER_KEY = "reprohub"


class HubPlugin(LockWriting, SummaryHooks):
    """Session state and hooks; lock-specific behaviour only when a lock is configured."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        option = config.getoption
        lock = option("hub_lock") or config.getini("hub_lock") or None
        self.lock_path = Path(config.rootpath, lock) if lock and not os.path.isabs(lock) else (Path(lock) if lock else None)
        self.accept = option("hub_accept")
        self.update, self.refresh = option("hub_update") or self.accept, option("hub_refresh") or self.accept
        self.offline, self.strict_unused = option("hub_offline"), option("hub_strict_unused")
        for mode in ("refresh", "accept"):  # both ask the origin where refs point now: no run offline can
            if option(f"hub_{mode}") and self.offline:
                raise pytest.UsageError(f"--hub-{mode} asks each repo's host where its ref points now, which "
                                        f"--hub-offline forbids: drop one (pytest --hub-lock hub.lock --hub-{mode})")
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
        self._answering: "contextlib.AbstractContextManager | None" = None
        self.http_only: list[str] = []  # clients made to use HTTP for this session (the header says so)
        if self.hermetic:
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
        lock = f" --hub-lock {self.session.shown_path}" if self.session is not None else ""
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
        lines += [f"reprohub: set {change}" for change in self.http_only]
        moved = self._stack_moved()
        if moved:
            lines.append(f"reprohub: goldens were recorded in another environment: {'; '.join(moved)}")
        return [printable(line) for line in lines]  # values from the lock are shown, never obeyed

    def _stack_moved(self) -> list[str]:
        """How this process's stack differs from the environments the lock's goldens were recorded in
        (what the header can know: dependencies and the device are compared per golden)."""
        from ..golden.checker import FIXTURE_ENVIRONMENT
        from ..golden.environment import capture, differences
        from ..golden.numerics import UNSET

        current = capture()
        current.update({k: v for k, v in FIXTURE_ENVIRONMENT.items() if current.get(k) == UNSET})  # as a test sees it
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
        with default_hub_override(self.hub), routed(self.hub, import_torch=False):
            yield
        self.session.current_test = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Settings are checked before the first test (a mirror that is no bundle stops the session), and requests
        are answered for the whole session, not only during tests: a thread a test started may ask between tests
        or after the last one (fenced all the same, and attributed to the test that started it)."""
        if self.session is not None:
            try:
                self.hub
            except ReprohubError as err:
                raise pytest.UsageError(str(err)) from None
        if self.hermetic:
            self.http_only = fence.http_only_clients()
            self._answering = network.answering(self.answerer)
            self._answering.__enter__()
            attribute_threads(lambda: self.session.current_test)

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
        if self._answering is not None:
            attribute_threads(None)
            self._answering.__exit__(None, None, None)
            self._answering = None

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        """A reprohub error inside a test reads as the test's line and the error, not 50 lines of internals."""
        outcome = yield
        report = outcome.get_result()
        error = call.excinfo.value if call.excinfo is not None else None
        if report.failed and isinstance(error, ReprohubError):
            report.longrepr = short_report(item, call.excinfo)
        if report.when in ("call", "teardown") and self.session is not None and item.nodeid in self.session.fenced:
            fail_for(report, self.session.fenced.pop(item.nodeid))  # refused, even where repo code caught it
        if report.failed:
            redact_report(report)

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
        self.session.conflicts += self.session.refused_outside_tests()
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
        unused = self.deselected == 0 and not self._path_selection() and any(self.session.unused().values())
        if self.strict_unused and unused and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
