"""The ``reprohub`` command: lock, fetch, verify, list, help, cache, serve, demo.

Exit codes a CI script can rely on::

    0  success
    1  verification failed: something differs from, or is missing in, the lock or the cache
    2  usage error (bad arguments)
    3  any other error (network, offline miss, untrusted repo, a hubconf.py that fails to import...)

``--hub-dir DIR``, ``--offline`` and ``-v`` go before or after the command (the first two as
``TORCH_HOME`` and ``REPROHUB_OFFLINE=1`` do); every command that reports takes ``--json`` for scripts
(``fetch``, ``bundle``, ``verify``, ``list``, ``env``, ``golden``, ``cache ls``).

``lock``, ``fetch``, ``verify``, ``cache`` and ``--help`` never import torch.

Example::

    reprohub lock acme/tiny:v1 --lock hub.lock     # pin without running tests
    reprohub fetch --lock hub.lock                 # prefetch for an offline CI step
    REPROHUB_OFFLINE=1 pytest --hub-lock hub.lock  # then test with no network
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import (HashMismatchError, LockMismatchError, RefError, ReprohubError, SettingError,
                     UntrustedRepoError)
from .settings import VERSION

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3
_GLOBAL: dict[str, Any] = {}  # --hub-dir and --offline, for every Hub this process makes


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Example:
        >>> main(["cache", "ls", "--json", "--hub-dir", tmp])  # doctest: +ELLIPSIS
        {"artifacts": [], "hub_dir": "...", "repos": []}
        0
    """
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="reprohub: %(message)s",
                        stream=sys.stderr)
    _GLOBAL.clear()
    _GLOBAL.update({k: v for k, v in (("hub_dir", args.hub_dir), ("offline", args.offline or None)) if v})
    try:
        return args.run(args)
    except (RefError, SettingError) as err:  # what was typed can never work: a usage error
        return _fail(f"error: {err}", EXIT_USAGE)
    except (HashMismatchError, LockMismatchError) as err:  # content differs from what is pinned
        return _fail(f"error: {err}", EXIT_MISMATCH)
    except UntrustedRepoError as err:
        fix = " Fix: add --trust to this command to trust it" if hasattr(args, "trust") else f" Fix: {err.fix}"
        return _fail(f"error: expected {err.expected}, found {err.found}.{fix} (or set REPROHUB_TRUST=owner/repo)",
                     EXIT_ERROR)
    except ReprohubError as err:
        return _fail(f"error: {err}", EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # repo code (a hubconf.py that fails to import or to build its model)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return _fail(_repo_code_failed(err, args.verbose), EXIT_ERROR)


def _fail(message: str, code: int) -> int:
    _say(message, file=sys.stderr)
    return code


def _say(*lines: str, file=None) -> None:
    """Print each of ``lines`` as one line, with control characters (a newline too) escaped: lock values,
    golden metadata and repo docstrings are shown, never obeyed by the terminal, and cannot forge a line
    (:func:`reprohub.redact.printable`)."""
    from .redact import printable

    for line in lines:
        print(printable(str(line)), file=file or sys.stdout, flush=True)


def _repo_code_failed(err: Exception, verbose: bool) -> str:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprohub", description="Reproducible, pinned, verified PyTorch Hub loads.",
                                     epilog="exit codes: 0 ok, 1 verification failed, 2 usage, 3 other errors")
    parser.add_argument("--version", action="version", version=f"reprohub {VERSION}")
    common = argparse.ArgumentParser(add_help=False)  # global options, also accepted after the command
    for target, default in ((parser, None), (common, argparse.SUPPRESS)):
        target.add_argument("-v", "--verbose", action="store_true", default=default or False,
                            help="log what is resolved and downloaded, and from where")
        target.add_argument("--hub-dir", metavar="DIR", default=default,
                            help="the hub dir (cache root), as TORCH_HOME/hub or reprohub.set_dir()")
        target.add_argument("--offline", action="store_true", default=default or False,
                            help="no network at all, as REPROHUB_OFFLINE=1")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(run=run)
        return p

    p = command("lock", _lock, "resolve repo specs to commits and pin them in a lockfile (no tests run)")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="owner/repo[:ref]")
    p.add_argument("--lock", default="hub.lock", help="lockfile to update (default: hub.lock)")
    p.add_argument("--trust", action="store_true", help="trust these repos (as trust_repo=True)")

    p = command("fetch", _fetch, "download everything a lockfile pins into the cache (for offline runs)")
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")
    _json_option(p)
    p.add_argument("--from", dest="source", metavar="BUNDLE", default=None,
                   help="fill the cache from this bundle (folder, file:// or http(s):// URL) only; "
                        "the origin is never asked")

    p = command("bundle", _bundle, "write everything a lockfile pins into a static, content-addressed folder "
                "that any file or web server can serve as a mirror")
    p.add_argument("folder", metavar="DIR", help="the bundle folder (created; existing intact files are kept)")
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")
    _json_option(p)

    p = command("verify", _verify, "re-hash the cache (and goldens) against a lockfile")
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")
    p.add_argument("--bundle", metavar="DIR", default=None,
                   help="check this bundle folder instead of the cache (goldens are still checked)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = command("list", _list, "list the entrypoints of a repo (imports its hubconf)")
    p.add_argument("spec", help="owner/repo[:ref]")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")
    p.add_argument("--json", action="store_true", help="print the entrypoints as a JSON list")

    p = command("help", _help, "show an entrypoint's docstring (imports its hubconf); `help COMMAND`: a "
                "command's own help")
    p.add_argument("spec", help="owner/repo[:ref], or a reprohub command")
    p.add_argument("model", nargs="?", help="entrypoint name")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")
    p.set_defaults(commands=sub.choices)

    p = command("cache", _cache, "inspect or clean the cache: ls, rm NAME..., prune [--lock hub.lock]")
    p.add_argument("action", choices=("ls", "rm", "prune"))
    p.add_argument("names", nargs="*", help="for rm: owner/repo, a commit, or an artifact URL")
    p.add_argument("--lock", default=None, help="for prune: also remove whatever this lock does not pin")
    p.add_argument("--json", action="store_true", help="for ls: print the entries as JSON")

    p = command("env", _env, "show the environment(s) a lock's goldens were recorded in; --requirements: as pip "
                "requirement lines that rebuild the stack (`pip install -r /dev/stdin`)")
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")
    p.add_argument("--requirements", action="store_true", help="print pip requirement lines instead")
    _json_option(p)

    p = command("golden", _golden, "goldens as reviewable text: show FILE... (one line per leaf: dtype, shape, "
                "statistics, a digest; works as a git textconv), diff OLD NEW (the golden engine's report)")
    p.add_argument("action", choices=("show", "diff"))
    p.add_argument("files", nargs="+", metavar="FILE", help="golden .safetensors files (diff: exactly two)")
    _json_option(p)
    p.add_argument("--textconv", action="store_true", help="for git's textconv: exit 0 for a file that is no "
                   "golden too (its text says so), so a diff still shows")

    p = command("serve", _serve, "serve local Git repos (and files) on 127.0.0.1 as a GitHub-compatible host")
    p.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=PATH", help="a Git repo to serve")
    p.add_argument("--file", action="append", default=[], metavar="NAME=PATH", help="a file to serve at /files/NAME")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks one)")
    p.add_argument("--latency", type=float, default=0.0, metavar="MS",
                   help="answer every request after MS milliseconds, as a host a network round trip away")

    p = command("bench", _bench, "time cold and warm loads of one entrypoint (a fresh cache vs a warm one), "
                "with the requests each makes")
    p.add_argument("spec", help="owner/repo[:ref]")
    p.add_argument("model", help="entrypoint name")
    p.add_argument("--repeat", type=int, default=5, help="loads of each kind (default 5); medians are shown")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="an argument for the entrypoint, e.g. --arg pretrained=False (a Python literal, else text)")

    p = command("demo", _demo, "the built-in example: serve a demo repo, lock it, test it with --hub-lock")
    p.add_argument("--workdir", default=None, help="keep the demo project here (default: a temporary folder)")
    return parser


def _json_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")


def _report(args, data: Any, *lines: str) -> None:
    """The command's result: ``data`` as JSON with ``--json``, else ``lines`` for people."""
    if args.json:
        print(json.dumps(data, indent=1, sort_keys=True))
    else:
        _say(*lines)


def _hub(offline: bool | None = None, pins=None, **kwargs):
    from .hub import Hub

    return Hub(**{"offline": offline, "pins": pins, **_GLOBAL, **kwargs})


def _lock(args) -> int:
    from .lock.lockfile import Lockfile
    from .lock.session import LockSession

    lock = Lockfile.read(args.lock)
    session = LockSession(lock, args.lock, update=True, refresh=True)  # pin what each ref points to now
    hub = _hub(pins=session)
    hub.recorder.listeners.append(session.observe)
    for spec in args.specs:
        resolved = hub.resolve(spec, trust_repo=True if args.trust else "check", force_reload=True)
        _say(f"{spec} -> {resolved.commit}")
    changed = session.result().write(args.lock, base=lock)
    _say(f"{args.lock}: {'written' if changed else 'unchanged'}")
    return EXIT_OK


class _LockedHub:
    """A Hub bound to one lock: each pinned repo is fetched from the host the lock recorded (unless an API
    URL is configured), and that host never receives GITHUB_TOKEN (see ``Hub._github_for``)."""

    def __init__(self, lock_path: str, **hub_args) -> None:
        from .lock.session import LockSession

        self.lock = _read_existing_lock(lock_path)
        self.hub = _hub(pins=LockSession(self.lock, lock_path), **hub_args)

    def resolve(self, spec: str):
        from .sources import GIT_PREFIX

        return self.hub.resolve(spec, source="git" if spec.startswith(GIT_PREFIX) else "github", trust_repo=True,
                                verbose=False)


def _fetch(args) -> int:
    from .lock.hermetic import RequestAnswerer
    from .redact import redact_url

    extra = {"mirrors": [args.source], "origin": False} if args.source else {}
    locked = _LockedHub(args.lock, **extra)
    repos, artifacts, lines = [], [], []
    for spec, pin in sorted(locked.lock.repos.items()):
        ok = locked.resolve(spec).digests.matches(pin.tree_sha256)
        repos.append({"spec": spec, "commit": pin.commit, "ok": ok})
        lines.append(f"repo {spec} @ {pin.commit[:12]}: {'ok' if ok else 'TREE MISMATCH'}")
    for url in sorted(locked.lock.artifacts):
        got = locked.hub.fetch_artifact(url)
        artifacts.append({"url": redact_url(url), "size": got.size, "sha256": got.sha256})
        lines.append(f"artifact {redact_url(url)}: {got.size} bytes, sha256 {got.sha256[:12]}")
    hub = locked.hub
    answerer = RequestAnswerer(hub.pins, hub.layout, hub.downloader, hub.mirrors, offline=not hub.origin)
    bodies = [pin for _, pin in sorted(locked.lock.requests.items()) if answerer.body_for(pin)]
    lines += [f"request {redact_url(pin.key)}: {pin.size} bytes, sha256 {pin.sha256[:12]}" for pin in bodies]
    _report(args, {"lock": args.lock, "repos": repos, "artifacts": artifacts,
                   "requests": [{"key": redact_url(p.key), "size": p.size, "sha256": p.sha256} for p in bodies]}, *lines)
    return EXIT_OK


def _bundle(args) -> int:
    from .lock.bundle import write_bundle
    from .lock.beside import response_body_for_bundle

    locked = _LockedHub(args.lock)
    report = write_bundle(locked.lock, Path(args.folder), lambda spec, pin: locked.resolve(spec).path,
                          lambda url, pin: locked.hub.fetch_artifact(url).path,
                          lambda pin: response_body_for_bundle(pin, locked.hub.layout, args.lock))
    _report(args, {"folder": args.folder, "written": list(report.written), "kept": list(report.kept)},
            *(f"wrote {item}" for item in report.written),
            f"{args.folder}: {len(report.written)} files written, {len(report.kept)} already there and intact; "
            f"serve it with any static server and set REPROHUB_MIRROR to its location")
    return EXIT_OK


def _verify(args) -> int:
    from .lock.verify import verify_lock, written_by_code

    lock = _read_existing_lock(args.lock)
    problems, _ = verify_lock(lock, Path(args.lock).resolve().parent, _hub().layout,
                              bundle=Path(args.bundle) if args.bundle else None)
    notes = [] if args.bundle else written_by_code(lock, _hub().layout)
    counts = {"repos": len(lock.repos), "artifacts": len(lock.artifacts), "goldens": len(lock.goldens),
              **({"requests": len(lock.requests)} if lock.requests else {})}
    where = f"the bundle {args.bundle}" if args.bundle else f"the cache {_hub().hub_dir}"
    what = ", ".join(plural(n, t[:-1]) for t, n in counts.items())
    _report(args, {"lock": args.lock, "against": where, "checked": counts, "problems": problems, "notes": notes,
                   "ok": not problems},
            *problems, *notes, f"checked {what} of {args.lock} against {where} and the golden files: "
                               f"{plural(len(problems), 'problem')}")
    return EXIT_MISMATCH if problems else EXIT_OK


def _read_existing_lock(path: str):
    from .lock.lockfile import Lockfile

    if not Path(path).exists():
        raise ReprohubError(f"a lockfile at {path}", "no such file", "create one with `reprohub lock SPEC` "
                            "or `pytest --hub-lock hub.lock --hub-update`")
    return Lockfile.read(path)


def _list(args) -> int:
    names = _hub().list(args.spec, trust_repo=True if args.trust else "check", verbose=False)
    print(json.dumps(names) if args.json else "\n".join(names))
    return EXIT_OK


def _help(args) -> int:
    if args.model is None:
        if args.spec in args.commands:  # `reprohub help lock`: the command's own help
            args.commands[args.spec].print_help()
            return EXIT_OK
        return _fail(f"error: help takes SPEC MODEL (an entrypoint of a repo) or a command "
                     f"({', '.join(args.commands)}); found only {args.spec!r}", EXIT_USAGE)
    doc = _hub().help(args.spec, args.model, trust_repo=True if args.trust else "check") or "(no docstring)"
    _say(*doc.split("\n"))
    return EXIT_OK


def _cache(args) -> int:
    from .cache import tool
    from .lock.lockfile import Lockfile

    keep = None
    if args.lock:
        lock = Lockfile.read(args.lock)
        keep = ({pin.commit for pin in lock.repos.values()}, set(lock.artifacts))
    return tool.run(args.action, args.names, _hub().layout, keep, as_json=args.json)


def _bench(args) -> int:
    from .testing.bench import bench_load

    kwargs = dict(_entry_argument(item) for item in args.arg)
    for line in bench_load(args.spec, args.model, args.repeat, trust_repo=True if args.trust else "check", **kwargs):
        _say(line)
    return EXIT_OK


def _entry_argument(item: str) -> tuple[str, Any]:
    """``NAME=VALUE`` as a keyword argument: the value as a Python literal (``False``, ``3``), else as text."""
    import ast

    name, eq, text = item.partition("=")
    if not eq or not name.isidentifier():
        raise SettingError("--arg NAME=VALUE with NAME a Python identifier", repr(item), "write it as pretrained=False")
    try:
        return name, ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return name, text


def _env(args) -> int:
    from .golden.environment import requirements

    lock = _read_existing_lock(args.lock)
    if not lock.environments:
        return _fail(f"error: {args.lock} records no environment (its goldens were recorded before reprohub "
                     "recorded them, or it has none); re-record with --hub-update", EXIT_ERROR)
    if args.requirements:
        lines = requirements({k: pin.values for k, pin in lock.environments.items()})
        _report(args, {"requirements": lines}, *lines)
        return EXIT_OK
    recorded_in: dict[str, list[str]] = {}  # one pass over the goldens, not one per environment
    for key, golden in sorted(lock.goldens.items()):
        recorded_in.setdefault(golden.environment, []).append(key)
    lines = []
    for env_id, pin in sorted(lock.environments.items()):
        goldens = recorded_in.get(env_id, [])
        lines.append(f"environment {env_id} ({plural(len(goldens), 'golden')}: {', '.join(goldens)})")
        width = max(len(k) for k in pin.values)
        lines += [f"  {key:<{width}}  {value}" for key, value in sorted(pin.values.items())]
    _report(args, {"environments": {env_id: {"goldens": recorded_in.get(env_id, []), "values": pin.values}
                                    for env_id, pin in lock.environments.items()}}, *lines)
    return EXIT_OK


def _golden(args) -> int:
    from .golden.text import DAMAGED, diff_text, show_lines

    if args.action == "show":
        shown = {path: show_lines(path) for path in args.files}
        damaged = [path for path, lines in shown.items() if lines[0].startswith(DAMAGED)]
        _report(args, [{"file": path, "golden": path not in damaged, "lines": lines} for path, lines in shown.items()],
                *(line for path, lines in shown.items()
                  for line in ([f"== {path}"] if len(args.files) > 1 else []) + lines))
        return EXIT_MISMATCH if damaged and not args.textconv else EXIT_OK
    if len(args.files) != 2:
        return _fail(f"error: golden diff takes two files, OLD NEW; found {len(args.files)}", EXIT_USAGE)
    report = diff_text(*args.files)
    _report(args, {"old": args.files[0], "new": args.files[1], "matches": not report, "report": report},
            *(report.split("\n") if report else [f"{args.files[1]} matches {args.files[0]} (within the per-dtype "
                                                    "tolerances)"]))
    return EXIT_MISMATCH if report else EXIT_OK


def _serve(args) -> int:
    from .testing.server import HubServer

    try:
        server = HubServer(port=args.port)
    except OSError as err:
        raise ReprohubError(f"a free port {args.port} on 127.0.0.1", f"{err.strerror or err}",
                            "pass --port 0 to pick a free port, or stop what listens there") from None
    server.set_latency(args.latency / 1000)
    for item in args.repo:
        name, _, path = item.partition("=")
        server.add_repo(name, path)
    for item in args.file:
        name, _, path = item.partition("=")
        server.add_file(name, Path(path))
    _say(f"serving on {server.url}", f"  export REPROHUB_GITHUB_API_URL={server.api_url}", f"  files: {server.url}/files/")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _demo(args) -> int:
    from .testing.demo.run import run_demo

    return run_demo(args.workdir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
