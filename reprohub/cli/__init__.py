"""The ``reprohub`` command: lock, fetch, verify, list, help, cache, serve, demo, archive.

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
import difflib
import logging
import sys
from typing import Callable, Sequence

from ..errors import BisectError, HashMismatchError, LockMismatchError, RefError, ReprohubError, SettingError, UntrustedRepoError
from ..settings import VERSION
from . import locks, repos, tools
from .common import EXIT_ERROR, EXIT_MISMATCH, EXIT_OK, EXIT_USAGE, GLOBAL, fail, json_option, lock_option, plural, repo_code_failed  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Example:
        >>> main(["cache", "ls", "--json", "--hub-dir", tmp])  # doctest: +ELLIPSIS
        {"artifacts": [], "hub_dir": "...", "repos": []}
        0
    """
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # told by the command that was run, with its usage and the option meant
        _unknown_arguments(getattr(args, "parser", parser), unknown)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="reprohub: %(message)s",
                        stream=sys.stderr)
    GLOBAL.clear()
    GLOBAL.update({k: v for k, v in (("hub_dir", args.hub_dir), ("offline", args.offline or None)) if v})
    try:
        return args.run(args)
    except (RefError, SettingError) as err:  # what was typed can never work: a usage error
        return fail(f"error: {err}", EXIT_USAGE)
    except BisectError as err:  # the tests it was given could not run: what was typed
        return fail(f"error: {err}", EXIT_USAGE)
    except (HashMismatchError, LockMismatchError) as err:  # content differs from what is pinned
        return fail(f"error: {err}", EXIT_MISMATCH)
    except UntrustedRepoError as err:
        fix = " Fix: add --trust to this command to trust it" if hasattr(args, "trust") else f" Fix: {err.fix}"
        return fail(f"error: expected {err.expected}, found {err.found}.{fix} (or set REPROHUB_TRUST=owner/repo)",
                     EXIT_ERROR)
    except ReprohubError as err:
        return fail(f"error: {err}", EXIT_ERROR)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # repo code (a hubconf.py that fails to import or to build its model)
        if args.verbose:
            import traceback

            traceback.print_exc()
        return fail(repo_code_failed(err, args.verbose), EXIT_ERROR)


def _unknown_arguments(parser: argparse.ArgumentParser, unknown: list[str]) -> None:
    """A usage error naming what was not understood, the command's usage, and the option that was likely meant
    (``--lok`` -> ``--lock``); exits 2 as argparse does."""
    options = [o for action in parser._actions for o in action.option_strings]
    guesses = [m for word in unknown if word.startswith("-")
               for m in difflib.get_close_matches(word.split("=")[0], options, n=1)]
    hint = f" (did you mean {' '.join(dict.fromkeys(guesses))}?)" if guesses else ""
    parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")


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
        p.set_defaults(run=run, parser=p)
        return p

    p = command("lock", locks.lock, "resolve repo specs to commits and pin them in a lockfile (no tests run)")
    p.add_argument("specs", nargs="+", metavar="SPEC", help="owner/repo[:ref]")
    p.add_argument("--lock", default="hub.lock", help="lockfile to update (default: hub.lock)")
    p.add_argument("--trust", action="store_true", help="trust these repos (as trust_repo=True)")

    p = command("fetch", locks.fetch, "download everything a lockfile pins into the cache (for offline runs)")
    lock_option(p)
    json_option(p)
    p.add_argument("--from", dest="source", metavar="BUNDLE", default=None,
                   help="fill the cache from this bundle (folder, file:// or http(s):// URL) only; "
                        "the origin is never asked")

    p = command("bundle", locks.bundle, "write everything a lockfile pins into a static, content-addressed folder "
                "that any file or web server can serve as a mirror")
    p.add_argument("folder", metavar="DIR_OR_OCI", help="the bundle folder (created; existing intact files are kept), "
                   "or oci://HOST/NAME:TAG to push it to an OCI registry (blobs already there are not uploaded)")
    lock_option(p)
    json_option(p)

    p = command("verify", locks.verify, "re-hash the cache (and goldens) against a lockfile")
    lock_option(p)
    p.add_argument("--bundle", metavar="DIR", default=None,
                   help="check this bundle folder instead of the cache (goldens are still checked)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = command("list", repos.list, "list the entrypoints of a repo (imports its hubconf)")
    p.add_argument("spec", help="owner/repo[:ref]")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")
    p.add_argument("--json", action="store_true", help="print the entrypoints as a JSON list")

    p = command("help", repos.help, "show an entrypoint's docstring (imports its hubconf); `help COMMAND`: a "
                "command's own help")
    p.add_argument("spec", help="owner/repo[:ref], or a reprohub command")
    p.add_argument("model", nargs="?", help="entrypoint name")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")
    p.set_defaults(commands=sub.choices)

    p = command("cache", repos.cache, "inspect or clean the cache: ls, rm NAME..., prune [--lock hub.lock]")
    p.add_argument("action", choices=("ls", "rm", "prune"))
    p.add_argument("names", nargs="*", help="for rm: owner/repo, a commit, or an artifact URL")
    p.add_argument("--lock", default=None, help="for prune: also remove whatever this lock does not pin")
    p.add_argument("--json", action="store_true", help="for ls: print the entries as JSON")

    p = command("env", repos.env, "show the environment(s) a lock's goldens were recorded in; --requirements: as pip "
                "requirement lines that rebuild the stack (`pip install -r /dev/stdin`)")
    lock_option(p)
    p.add_argument("--requirements", action="store_true", help="print pip requirement lines instead")
    json_option(p)

    p = command("mirror", locks.mirror_check, "check a mirror before relying on it: `mirror check LOCATION` (a bundle "
                "folder, an http(s):// or an oci:// bundle) says whether every file the lock pins is there with its "
                "size (HEAD, no download; --deep re-hashes) and whether the host serves Range; exit 0 only when complete")
    p.add_argument("action", choices=("check",))
    p.add_argument("location", help="a bundle folder, file://, http(s):// or oci://HOST/NAME:TAG")
    lock_option(p)
    p.add_argument("--deep", action="store_true", help="download and re-hash every file instead of checking sizes")
    json_option(p)

    p = command("archive", locks.archive, "before publishing: ask Software Heritage whether every commit the lock pins "
                "is archived (exit 0 when all are, 1 otherwise, each named); --save asks it to visit the origin of "
                "each missing one; names the weights and request bodies only a bundle keeps")
    lock_option(p)
    p.add_argument("--save", action="store_true", help="ask the archive to save each missing repo (Save Code Now)")
    json_option(p)
    p = command("bisect", locks.bisect, "which one pinned component (weights, a repo's commit, a request body) turns "
                "tests from passing to failing between two locks: each swapped from --good into --bad, the tests run "
                "once per swap (exit 0: a cause named; 1: none single; 2: usage)")
    p.add_argument("--good", required=True, metavar="LOCK_OR_BUNDLE", help="the lock (or bundle folder) that passes")
    p.add_argument("--bad", required=True, metavar="LOCK_OR_BUNDLE", help="the lock (or bundle folder) that fails; "
                   "its goldens are used in every run")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS",
                   help="what to run: the arguments after -- go to pytest as they are")
    json_option(p)

    p = command("golden", repos.golden, "goldens as reviewable text: show FILE... (one line per leaf: dtype, shape, "
                "statistics, a digest; works as a git textconv), diff OLD NEW (the golden engine's report), trace "
                "FILE (the module calls a traced golden kept: what went in and out of each)")
    p.add_argument("action", choices=("show", "diff", "trace"))
    p.add_argument("files", nargs="+", metavar="FILE", help="golden .safetensors files (diff: exactly two; trace: one)")
    json_option(p)
    p.add_argument("--textconv", action="store_true", help="for git's textconv: exit 0 for a file that is no "
                   "golden too (its text says so), so a diff still shows")

    p = command("serve", tools.serve, "serve local Git repos (and files) on 127.0.0.1 as a GitHub-compatible host")
    p.add_argument("--repo", action="append", default=[], metavar="OWNER/NAME=PATH", help="a Git repo to serve")
    p.add_argument("--file", action="append", default=[], metavar="NAME=PATH", help="a file to serve at /files/NAME")
    p.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks one)")
    p.add_argument("--latency", type=float, default=0.0, metavar="MS",
                   help="answer every request after MS milliseconds, as a host a network round trip away")

    p = command("bench", repos.bench, "time cold and warm loads of one entrypoint (a fresh cache vs a warm one), "
                "with the requests each makes")
    p.add_argument("spec", help="owner/repo[:ref]")
    p.add_argument("model", help="entrypoint name")
    p.add_argument("--repeat", type=int, default=5, help="loads of each kind (default 5); medians are shown")
    p.add_argument("--trust", action="store_true", help="trust this repo (as trust_repo=True)")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                   help="an argument for the entrypoint, e.g. --arg pretrained=False (a Python literal, else text)")

    p = command("demo", tools.demo, "the built-in example: serve a demo repo, lock it, test it with --hub-lock")
    p.add_argument("--workdir", default=None, help="keep the demo project here (default: a temporary folder)")
    return parser
