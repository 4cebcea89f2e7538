"""The ``reprohub`` command: lock, fetch, verify, list, help, cache, serve, demo.

Exit codes a CI script can rely on::

    0  success
    1  verification failed: something differs from, or is missing in, the lock or the cache
    2  usage error (bad arguments)
    3  any other reprohub error (network, offline miss, untrusted repo...)

``lock``, ``fetch``, ``verify``, ``cache`` and ``--help`` never import torch.

Example::

    reprohub lock acme/tiny:v1 --lock hub.lock     # pin without running tests
    reprohub fetch --lock hub.lock                 # prefetch for an offline CI step
    REPROHUB_OFFLINE=1 pytest --hub-lock hub.lock  # then test with no network
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from .errors import RefError, ReprohubError, SettingError
from .settings import VERSION

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_ERROR = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="reprohub: %(message)s",
                        stream=sys.stderr)
    try:
        return args.run(args)
    except (RefError, SettingError) as err:  # what was typed can never work: a usage error
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ReprohubError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reprohub", description="Reproducible, pinned, verified PyTorch Hub loads.",
                                     epilog="exit codes: 0 ok, 1 verification failed, 2 usage, 3 other errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is resolved and downloaded")
    parser.add_argument("--version", action="version", version=f"reprohub {VERSION}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, run: Callable, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(run=run)
        return p

    p = command("lock", _lock, "resolve repo specs to commits and pin them in a lockfile (no tests run)")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="owner/repo[:ref]")
    p.add_argument("--lock", default="hub.lock", help="lockfile to update (default: hub.lock)")
    p.add_argument("--trust", action="store_true", help="trust these repos (as trust_repo=True)")

    p = command("fetch", _fetch, "download everything a lockfile pins into the cache (for offline runs)")
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")
    p.add_argument("--from", dest="source", metavar="BUNDLE", default=None,
                   help="fill the cache from this bundle (folder, file:// or http(s):// URL) only; "
                        "the origin is never asked")

    p = command("bundle", _bundle, "write everything a lockfile pins into a static, content-addressed folder "
                "that any file or web server can serve as a mirror")
    p.add_argument("folder", metavar="DIR", help="the bundle folder (created; existing intact files are kept)")
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")

    p = command("verify", _verify, "re-hash the cache (and goldens) against a lockfile")
    p.add_argument("--lock", default="hub.lock", help="lockfile (default: hub.lock)")
    p.add_argument("--bundle", metavar="DIR", default=None,
                   help="check this bundle folder instead of the cache (goldens are still checked)")

    p = command("list", _list, "list the entrypoints of a repo (imports its hubconf)")
    p.add_argument("spec", help="owner/repo[:ref]")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")

    p = command("help", _help, "show an entrypoint's docstring (imports its hubconf)")
    p.add_argument("spec", help="owner/repo[:ref]")
    p.add_argument("model", help="entrypoint name")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")

    p = command("cache", _cache, "inspect or clean the cache: ls, rm NAME..., prune [--lock hub.lock]")
    p.add_argument("action", choices=("ls", "rm", "prune"))
    p.add_argument("names", nargs="*", help="for rm: owner/repo, a commit, or an artifact URL")
    p.add_argument("--lock", default=None, help="for prune: also remove whatever this lock does not pin")

    p = command("serve", _serve, "serve local Git repos (and files) on 127.0.0.1 as a GitHub-compatible host")
    p.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=PATH", help="a Git repo to serve")
    p.add_argument("--file", action="append", default=[], metavar="NAME=PATH", help="a file to serve at /files/NAME")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks one)")

    p = command("bench", _bench, "time cold and warm loads of one entrypoint (a fresh cache vs a warm one), "
                "with the requests each makes")
    p.add_argument("spec", help="owner/repo[:ref]")
    p.add_argument("model", help="entrypoint name")
    p.add_argument("--repeat", type=int, default=5, help="loads of each kind (default 5); medians are shown")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")

    p = command("demo", _demo, "the built-in example: serve a demo repo, lock it, test it with --hub-lock")
    p.add_argument("--workdir", default=None, help="keep the demo project here (default: a temporary folder)")
    return parser


def _hub(offline: bool | None = None, pins=None, **kwargs):
    from .hub import Hub

    return Hub(offline=offline, pins=pins, **kwargs)


def _lock(args) -> int:
    from .lock.lockfile import Lockfile
    from .lock.session import LockSession

    lock = Lockfile.read(args.lock)
    session = LockSession(lock, args.lock, update=True, refresh=True)  # pin what each ref points to now
    hub = _hub(pins=session)
    hub.recorder.listeners.append(session.observe)
    for spec in args.specs:
        resolved = hub.resolve(spec, trust_repo=True if args.trust else "check", force_reload=True)
        print(f"{spec} -> {resolved.commit}")
    changed = session.result().write(args.lock, base=lock)
    print(f"{args.lock}: {'written' if changed else 'unchanged'}")
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
    from .redact import redact_url

    extra = {"mirrors": [args.source], "origin": False} if args.source else {}
    locked = _LockedHub(args.lock, **extra)
    for spec, pin in sorted(locked.lock.repos.items()):
        status = "ok" if locked.resolve(spec).digests.matches(pin.tree_sha256) else "TREE MISMATCH"
        print(f"repo {spec} @ {pin.commit[:12]}: {status}")
    for url in sorted(locked.lock.artifacts):
        got = locked.hub.fetch_artifact(url)
        print(f"artifact {redact_url(url)}: {got.size} bytes, sha256 {got.sha256[:12]}")
    return EXIT_OK


def _bundle(args) -> int:
    from .lock.bundle import write_bundle

    locked = _LockedHub(args.lock)
    report = write_bundle(locked.lock, Path(args.folder), lambda spec, pin: locked.resolve(spec).path,
                          lambda url, pin: locked.hub.fetch_artifact(url).path)
    for item in report.written:
        print(f"wrote {item}")
    print(f"{args.folder}: {len(report.written)} files written, {len(report.kept)} already there and intact; "
          f"serve it with any static server and set REPROHUB_MIRROR to its location")
    return EXIT_OK


def _verify(args) -> int:
    from .lock.verify import verify_lock

    lock = _read_existing_lock(args.lock)
    problems, checked = verify_lock(lock, Path(args.lock).resolve().parent, _hub().layout,
                                    bundle=Path(args.bundle) if args.bundle else None)
    for line in problems:
        print(line)
    print(f"{checked} entries checked, {len(problems)} problems")
    return EXIT_MISMATCH if problems else EXIT_OK


def _read_existing_lock(path: str):
    from .lock.lockfile import Lockfile

    if not Path(path).exists():
        raise ReprohubError(f"a lockfile at {path}", "no such file", "create one with `reprohub lock SPEC` "
                            "or `pytest --hub-lock hub.lock --hub-update`")
    return Lockfile.read(path)


def _list(args) -> int:
    for name in _hub().list(args.spec, trust_repo=True if args.trust else "check"):
        print(name)
    return EXIT_OK


def _help(args) -> int:
    print(_hub().help(args.spec, args.model, trust_repo=True if args.trust else "check") or "(no docstring)")
    return EXIT_OK


def _cache(args) -> int:
    from .cache import tool
    from .lock.lockfile import Lockfile

    keep = None
    if args.lock:
        lock = Lockfile.read(args.lock)
        keep = ({pin.commit for pin in lock.repos.values()}, set(lock.artifacts))
    return tool.run(args.action, args.names, _hub().layout, keep)


def _bench(args) -> int:
    from .testing.bench import bench_load

    for line in bench_load(args.spec, args.model, args.repeat, trust_repo=True if args.trust else "check"):
        print(line)
    return EXIT_OK


def _serve(args) -> int:
    from .testing.server import HubServer

    try:
        server = HubServer(port=args.port)
    except OSError as err:
        raise ReprohubError(f"a free port {args.port} on 127.0.0.1", f"{err.strerror or err}",
                            "pass --port 0 to pick a free port, or stop what listens there") from None
    for item in args.repo:
        name, _, path = item.partition("=")
        server.add_repo(name, path)
    for item in args.file:
        name, _, path = item.partition("=")
        server.add_file(name, Path(path))
    print(f"serving on {server.url}\n  export REPROHUB_GITHUB_API_URL={server.api_url}\n  files: {server.url}/files/",
          flush=True)
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
