"""What every ``reprohub`` command shares: exit codes, printing (escaped), JSON reports, the Hub it uses."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
GLOBAL: dict[str, Any] = {}  # --hub-dir and --offline, for every Hub this process makes


def fail(message: str, code: int) -> int:
    say(message, file=sys.stderr)
    return code


def say(*lines: str, file=None) -> None:
    """Print each of ``lines`` as one line, with control characters (a newline too) escaped: lock values,
    golden metadata and repo docstrings are shown, never obeyed by the terminal, and cannot forge a line
    (:func:`reprohub.redact.printable`)."""
    from ..redact import printable

    for line in lines:
        print(printable(str(line)), file=file or sys.stdout, flush=True)


def repo_code_failed(err: Exception, verbose: bool) -> str:
    """One paragraph for an error raised by the repo's own code: what failed, and what to do."""
    where = "" if verbose else " (run with -v for the traceback)"
    if isinstance(err, ModuleNotFoundError) and err.name:
        package = err.name.split(".")[0]
        return (f"error: the repo's code needs the module {err.name!r}, which is not installed{where}. "
                f"Fix: pip install {package} (or the package the repo's README names for it); the hubconf's "
                "`dependencies` list says what it needs")
    return f"error: the repo's code raised {type(err).__name__}: {err}{where}"


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 problem``, ``2 problems``.

    Example:
        >>> plural(1, "entry", "entries"), plural(3, "file")
        ('1 entry', '3 files')
    """
    return f"{count} {word if count == 1 else many or word + 's'}"


def json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def lock_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")


def emit(args, data: Any, *lines: str) -> None:
    """The command's result: ``data`` as JSON with ``--json``, else ``lines`` for people."""
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
    else:
        say(*lines)


def make_hub(offline: bool | None = None, pins=None, **kwargs):
    from ..hub import Hub

    return Hub(**{"offline": offline, "pins": pins, **GLOBAL, **kwargs})
