"""The commands of a lock: ``lock``, ``fetch``, ``bundle``, ``verify``."""

from __future__ import annotations

from pathlib import Path

from ..errors import LockfileError, ReprohubError
from ..lock.oci import is_oci
from .common import EXIT_MISMATCH, EXIT_OK, EXIT_USAGE, emit, fail, make_hub, plural, say


def lock(args) -> int:
    from ..lock.lockfile import Lockfile
    from ..lock.session import LockSession

    lock = Lockfile.read(args.lock)
    session = LockSession(lock, args.lock, update=True, refresh=True)  # pin what each ref points to now
    hub = make_hub(pins=session)
    hub.recorder.listeners.append(session.observe)
    for spec in args.specs:
        resolved = hub.resolve(spec, trust_repo=True if args.trust else "check", force_reload=True)
        say(f"{spec} -> {resolved.commit}")
    changed = session.result().write(args.lock, base=lock)
    say(f"{args.lock}: {'written' if changed else 'unchanged'}")
    return EXIT_OK


class _LockedHub:
    """A Hub bound to one lock: each pinned repo is fetched from the host the lock recorded (unless an API
    URL is configured), and that host never receives GITHUB_TOKEN (see ``Hub._github_for``)."""

    def __init__(self, lock_path: str, **hub_args) -> None:
        from ..lock.session import LockSession

        self.lock = read_existing_lock(lock_path)
        self.hub = make_hub(pins=LockSession(self.lock, lock_path), **hub_args)

    def resolve(self, spec: str):
        from ..sources import GIT_PREFIX

        return self.hub.resolve(spec, source="git" if spec.startswith(GIT_PREFIX) else "github", trust_repo=True,
                                verbose=False)


def fetch(args) -> int:
    from ..lock.hermetic import RequestAnswerer
    from ..redact import redact_url

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
    emit(args, {"lock": args.lock, "repos": repos, "artifacts": artifacts,
                   "requests": [{"key": redact_url(p.key), "size": p.size, "sha256": p.sha256} for p in bodies]}, *lines)
    return EXIT_OK


def bundle(args) -> int:
    from ..lock.bundle import write_bundle
    from ..lock.beside import response_body_for_bundle

    locked = _LockedHub(args.lock)

    def write(folder: Path):
        return write_bundle(locked.lock, folder, lambda spec, pin: locked.resolve(spec).path,
                            lambda url, pin: locked.hub.fetch_artifact(url).path,
                            lambda pin: response_body_for_bundle(pin, locked.hub.layout, args.lock))

    if is_oci(args.folder):
        return _push(args, write, locked.hub.downloader)
    report = write(Path(args.folder))
    emit(args, {"folder": args.folder, "written": list(report.written), "kept": list(report.kept)},
            *(f"wrote {item}" for item in report.written),
            f"{args.folder}: {len(report.written)} files written, {len(report.kept)} already there and intact; "
            f"serve it with any static server and set REPROHUB_MIRROR to its location")
    return EXIT_OK


def _push(args, write, downloader) -> int:
    """``reprohub bundle --lock hub.lock oci://HOST/NAME:TAG``: the bundle written to a temporary folder (every
    file checked against the lock as for a folder), then pushed blob by blob (:mod:`reprohub.lock.oci`)."""
    import tempfile

    from ..lock.oci import parse_reference, push_bundle

    target = parse_reference(args.folder)
    with tempfile.TemporaryDirectory(prefix="reprohub-oci-bundle-") as tmp:
        write(Path(tmp))
        uploaded, present = push_bundle(Path(tmp), target, downloader)
    emit(args, {"target": args.folder, "uploaded": uploaded, "present": present},
            *(f"uploaded {item}" for item in uploaded),
            f"{args.folder}: {len(uploaded)} blobs uploaded, {len(present)} already in the registry; set "
            f"REPROHUB_MIRROR={args.folder} to read it")
    return EXIT_OK


def verify(args) -> int:
    from ..lock.verify import verify_lock, written_by_code

    lock = read_existing_lock(args.lock)
    problems, _ = verify_lock(lock, Path(args.lock).resolve().parent, make_hub().layout,
                              bundle=Path(args.bundle) if args.bundle else None)
    notes = [] if args.bundle else written_by_code(lock, make_hub().layout)
    counts = {"repos": len(lock.repos), "artifacts": len(lock.artifacts), "goldens": len(lock.goldens),
              **({"requests": len(lock.requests)} if lock.requests else {})}
    where = f"the bundle {args.bundle}" if args.bundle else f"the cache {make_hub().hub_dir}"
    what = ", ".join(plural(n, t[:-1]) for t, n in counts.items())
    emit(args, {"lock": args.lock, "against": where, "checked": counts, "problems": problems, "notes": notes,
                   "ok": not problems},
            *problems, *notes, f"checked {what} of {args.lock} against {where} and the golden files: "
                               f"{plural(len(problems), 'problem')}")
    return EXIT_MISMATCH if problems else EXIT_OK


def read_existing_lock(path: str):
    from ..lock.lockfile import Lockfile

    if not Path(path).exists():
        raise ReprohubError(f"a lockfile at {path}", "no such file", "create one with `reprohub lock SPEC` "
                            "or `pytest --hub-lock hub.lock --hub-update`")
    return Lockfile.read(path)


def bisect(args) -> int:
    """``reprohub bisect --good A --bad B -- PYTEST_ARGS`` (:mod:`reprohub.lock.bisect`)."""
    from ..lock.bisect import bisect as run_bisection, pytest_runner, read_side

    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    if not pytest_args:
        return fail("error: bisect needs the tests to run after --, e.g. `reprohub bisect --good old.lock --bad "
                    "hub.lock -- tests/test_model.py`", EXIT_USAGE)
    bad_path = Path(args.bad)
    if bad_path.is_dir():
        return fail("error: --bad must be a lock file (its goldens and hub-responses/ are the ones tested); a bundle "
                    "can be --good", EXIT_USAGE)
    try:
        bad = read_side(bad_path)
        good = read_side(args.good, bad.lock)
    except LockfileError as err:
        return fail(f"error: {err}", EXIT_USAGE)
    say_now = (lambda line: None) if args.json else say
    run = pytest_runner(bad_path, pytest_args, [good.bundle] if good.bundle else [], say_now)
    outcome = run_bisection(good, bad, run, say_now)
    cause = outcome.cause
    emit(args, {"cause": None if cause is None else {"table": cause.table, "key": cause.key, "label": cause.label},
                "runs": [{"ran": what, "passed": passed} for what, passed in outcome.runs],
                "verdict": outcome.verdict}, outcome.verdict)
    return outcome.exit_code


def mirror_check(args) -> int:
    """``reprohub mirror check LOCATION --lock hub.lock [--deep]`` (:mod:`reprohub.lock.mirrorcheck`)."""
    from ..lock.mirrorcheck import check_mirror, lines

    lock = read_existing_lock(args.lock)
    report = check_mirror(args.location, lock, deep=args.deep)
    emit(args, {"location": report.location, "complete": report.complete, "checked": report.checked,
                "problems": report.problems, "notes": report.notes, "ranges": report.ranges}, *lines(report))
    return EXIT_OK if report.complete else EXIT_MISMATCH


def archive(args) -> int:
    """``reprohub archive --lock hub.lock [--save] [--json]`` (:mod:`reprohub.lock.archived`)."""
    from ..errors import OfflineError
    from ..lock.archived import check_archive, lines
    from ..sources.swh import SoftwareHeritage, configured_url

    lock = read_existing_lock(args.lock)
    hub = make_hub()
    if hub.offline:
        raise OfflineError("Software Heritage's answer", "offline mode", "run this step online")
    if configured_url() is None:
        return fail("error: REPROHUB_SWH_URL=off: no archive to ask. Fix: unset it, or name the archive's root",
                    EXIT_USAGE)
    report = check_archive(lock, SoftwareHeritage(hub.downloader), save=args.save)
    emit(args, report.as_json(), *lines(report, args.lock))
    return EXIT_OK if report.complete else EXIT_MISMATCH
