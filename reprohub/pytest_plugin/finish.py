"""Writing the lock at the end of a session: what a complete run may prune, and what the run pinned."""

from __future__ import annotations

from pathlib import Path

import pytest

from ..errors import ReprohubError
from ..lock.lockfile import Lockfile


class LockWriting:
    """The part of ``HubPlugin`` that decides what the lock written at the end holds."""

    def _result(self) -> Lockfile:
        """The lock to write: this run's records merged in, and with --hub-prune the unused entries dropped."""
        result = self.session.result()
        if self.accept:
            result = self._without_moved_artifacts(result)
        if not self.config.getoption("hub_prune"):
            return result
        partial = self._partial_run()  # (--hub-prune without --hub-update was refused when the session began)
        if partial:
            raise ReprohubError("--hub-prune with --hub-update on a complete run (every test selected, run and "
                                "passed)", partial,
                                "nothing was written; run the whole suite where every test can run: "
                                "pytest --hub-lock LOCK --hub-update --hub-prune (or drop --hub-prune)")
        return result.without(self.session.unused())

    def _without_moved_artifacts(self, result: Lockfile) -> Lockfile:
        """An accept drops the weights a moved repo's *old* commit downloaded and no test of this run asked for
        (its new commit downloads others), and says so: they would be "unused" on every later run."""
        lock, recorded, used = self.session.lock, self.session.recorded, self.session.touched["artifacts"]
        still = {url for pin in result.repos.values() for url in pin.artifacts}
        dropped = {url: spec for spec, old in lock.repos.items() if spec in recorded.repos
                   and recorded.repos[spec].commit != old.commit
                   for url in old.artifacts if url not in used and url not in still and url in result.artifacts}
        self.pruned += [f"  accept: dropped artifact {url} (what {spec}'s old commit downloaded; its new commit "
                        "does not)" for url, spec in sorted(dropped.items())]
        self.session.dropped |= set(dropped)
        return result.without({"artifacts": set(dropped)})

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
