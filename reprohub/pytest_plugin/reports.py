"""What a reviewer reads: a reprohub error's short failure report, refusals, redaction, and the summary."""

from __future__ import annotations

from pathlib import Path

import pytest

from .. import settings
from ..fetch.fsutil import atomic_write_bytes
from ..redact import printable, redact_text


def short_report(item: pytest.Item, excinfo) -> str:
    """A reprohub error as the error first (pytest's one-line summary shows the first line), then the test's line."""
    error = excinfo.value
    own = [entry for entry in excinfo.traceback if Path(str(entry.path)) == Path(str(item.path))]
    where = ""
    if own:
        entry = own[-1]
        where = f"\n{item.location[0]}:{entry.lineno + 1}: in {item.name}\n    {str(entry.statement).strip()}"
    return f"{type(error).__module__}.{type(error).__name__}: {error}{where}"


def fail_for(report: pytest.TestReport, fenced: list[str]) -> None:
    """Fail a test for the requests a locked run refused it (:mod:`reprohub.lock.hermetic`)."""
    text = "\n".join(f"reprohub refused {what}" for what in dict.fromkeys(fenced))
    if report.passed:
        report.outcome, report.longrepr = "failed", text
    else:
        report.sections.append(("reprohub: refused requests", text))


def redact_report(report: pytest.TestReport) -> None:
    """A failure report with every secret query value and URL password masked (:mod:`reprohub.redact`):
    the messages of chained causes and the arguments pytest prints for each frame (urllib3's ``url``)
    carry the signed URL a test asked for.  Rendered to text only where it holds one."""
    text = str(report.longrepr) if report.longrepr is not None else ""
    cleaned = redact_text(text)
    if cleaned != text:
        report.longrepr = cleaned
    report.sections = [(title, redact_text(content)) for title, content in report.sections]


class SummaryHooks:
    """The part of ``HubPlugin`` that writes the session's summary: terminal, job summary, HTML report."""

    def pytest_terminal_summary(self, terminalreporter, exitstatus: int, config: pytest.Config) -> None:
        if self.session is None or self.is_worker:
            return
        from ..lock.report import summary_lines

        terminalreporter.section("reprohub")
        lines = [printable(redact_text(line)) for line in summary_lines(
            self.session, self.outcomes, self.deselected, self.written, self.strict_unused, self.update,
            self.refresh, self.write_error, self.hub.layout, prune=bool(self.config.getoption("hub_prune")),
            selection=", ".join(self._path_selection()))
            + self.pruned]
        for line in lines:
            terminalreporter.write_line(line)
        for written in self._write_reviews(lines):
            terminalreporter.write_line(written)

    def _write_reviews(self, lines: list[str]) -> list[str]:
        """The CI job's summary (appended to ``$GITHUB_STEP_SUMMARY`` when set) and ``--hub-report``'s HTML page."""
        from ..golden.review import html, markdown

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
