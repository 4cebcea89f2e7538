"""Golden files on disk: where each key lives, and the check/record decision.

Layout under the golden folder (ini ``hub_golden_dir``, default
``fixtures/goldens``)::

    <key>.safetensors          recorded on CPU
    <key>.cuda.safetensors     recorded on CUDA (used for CUDA outputs when present)
    <key>.<class>.safetensors  a variant for one machine class (``--hub-variant``: cpu-avx2, cuda-sm_90)
    <key>[...].golden.txt      each one's text companion, for review in any diff (golden/text.py)

A CUDA output with no CUDA golden is compared with the CPU golden under the
cross-device tolerance.  Each golden's sha256 is pinned in ``hub.lock`` under
its key (``<key>@cuda`` for CUDA goldens) and checked before it is trusted.

Example:
    >>> import torch
    >>> store = GoldenStore(tmp + "/goldens", tmp, update=True)
    >>> store.check(torch.ones(2), "acme/tiny/tiny_mlp", {})
    'recorded'
    >>> GoldenStore(tmp + "/goldens", tmp).check(torch.ones(2), "acme/tiny/tiny_mlp", {})
    'matched'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ..fetch.fsutil import inside_project, sha256_file
from ..redact import printable
from ..runtime.threads import beside
from ..errors import GoldenFileError, GoldenMismatchError, GoldenMissingError, LockMismatchError
from .engine import compare, effective_tolerance, flatten, load_golden, save_golden
from ..lock.lockfile import EnvironmentPin, GoldenPin, Lockfile
from .environment import capture, differences, environment_id
from .numerics import machine_class
from .review import review_record
from .text import calls_text, companion_path, write_calls_text, write_companion
from .attribution import Attribution, attribute
from .calls import RECORD_DIGEST, CallRecord, calls_path, calls_record, load_calls, names_record, save_calls, text_path as calls_text_path
from .trace import Tracer, decode, encode, fingerprints_of, first_moved
from ..lock.session import LockSession

_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@=-]*(/[A-Za-z0-9_][A-Za-z0-9_.@=-]*)*")


def check_key(key: str) -> str:
    """A golden key: ``/``-separated parts of letters, digits, ``_ . - @ =``, no part starting with ``.``."""
    if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > 200:
        raise GoldenMismatchError("a golden key like 'acme/tiny/tiny_mlp' or 'resnet/logits-batch4'",
                                  repr(key), "pass key= made of letters, digits, '_', '-', '.', '/'")
    return key


_digests: dict[tuple, str] = {}  # (path, inode, size, mtime_ns) -> sha256: goldens checked this process


def _digest_of(path: Path) -> str:
    """A golden file's sha256, re-hashed only when the file changed (its inode, size or mtime)."""
    st = os.stat(path)
    key = (str(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _digests:
        _digests[key] = sha256_file(path)
    return _digests[key]


def _recorded_environment(golden) -> dict:
    try:
        env = json.loads(golden.metadata.get("environment") or "{}")
    except ValueError:
        return {}
    return env if isinstance(env, dict) else {}


def _tolerance_of(output: Any, rtol: float | None, atol: float | None,
                  floor: "tuple[float, float] | None") -> "tuple[float, float]":
    """The tolerance the comparison used for ``output``'s first floating leaf (what a trace is held to)."""
    import torch

    dtype = next((leaf.dtype for leaf in flatten(output).values()
                  if isinstance(leaf, torch.Tensor) and leaf.is_floating_point()), torch.float32)
    return effective_tolerance(dtype, (rtol, atol), floor)


def _leaves_of(path: Path) -> "dict | None":
    """The leaves of the golden at ``path`` (``None``: none there, or damaged)."""
    try:
        return load_golden(path).leaves if path.is_file() else None
    except GoldenFileError:
        return None


def _floor(*floors: "tuple[float, float] | None") -> "tuple[float, float] | None":
    """The loosest of the tolerance floors that apply (cross-device, cross-environment), or None."""
    given = [f for f in floors if f is not None]
    return (max(f[0] for f in given), max(f[1] for f in given)) if given else None


def _replayed(tracer: "Tracer | None") -> "tuple[Tracer | None, str]":
    """A failed check's tracer with every call's fingerprint and copies (run again where the check kept only the
    test's own calls), or ``None`` and why it could not run."""
    if tracer is None:
        return None, ""
    from .calls import NotReplayable

    try:
        return tracer.replay(), ""
    except (NotReplayable, AttributeError, TypeError, RuntimeError) as err:
        return None, f"{type(err).__name__}: {str(err)[:80]}"


def device_of(output: Any) -> str:
    """The device type of the first tensor in ``output`` (``"cpu"`` when there is none)."""
    import torch

    for leaf in flatten(output).values():
        if isinstance(leaf, torch.Tensor):
            return leaf.device.type
    return "cpu"


class GoldenStore:
    """Check outputs against goldens in ``root``, recording them when updating."""

    def __init__(self, root: "str | Path", lock_dir: "str | Path", session: LockSession | None = None,
                 update: bool = False, refresh: bool = False,
                 cross_device: tuple[float, float] = (1e-4, 1e-5), accept_command: str = "pytest --hub-update",
                 accept: bool = False, cross_env: tuple[float, float] | None = None, strict_env: bool = False,
                 versions: "dict[str, str] | None" = None, variant: bool = False) -> None:
        self.root = Path(root)
        self.lock_dir = Path(lock_dir)
        self._relatives: dict[Path, str] = {}  # golden path -> its name in the lock (two resolves each: ~0.1 ms)
        self.session = session
        self.update = update and not refresh
        self.accept = accept
        self.writes = self.update or accept  # a missing or differing golden is (re-)recorded, not a failure
        self.cross_device = cross_device
        self.cross_env = cross_env  # the tolerance floor applied only where the environment differs
        self.strict_env = strict_env  # any environment difference fails (--hub-strict-env)
        self.versions = versions  # installed versions looked up once per session (environment.capture)
        self.accept_command = accept_command
        self.variant = variant  # record as this machine class's variant (--hub-variant)

    def delete_unpinned(self, before: Lockfile, after: Lockfile) -> list[str]:
        """After a prune was written: delete the golden files (and text companions) of the entries dropped from
        ``before`` to ``after``, and say which.  Only files inside the golden folder are touched (a lock's
        ``file`` is text a pull request can edit)."""
        root = self._own_root().resolve()
        deleted = []
        for key, pin in sorted(before.goldens.items()):
            path = (self.lock_dir / pin.file).resolve()
            if key in after.goldens or root not in path.parents or not path.name.endswith(".safetensors"):
                continue
            if not path.is_file() or any(other.file == pin.file for other in after.goldens.values()):
                continue  # gone already, or still pinned under another key
            path.unlink()
            companion_path(path).unlink(missing_ok=True)
            calls_path(path).unlink(missing_ok=True)
            calls_text_path(path).unlink(missing_ok=True)
            deleted.append(f"pruned golden {key}: deleted {pin.file}")
        return deleted

    def _choose(self, key: str, device: str, machine: str) -> "tuple[Path, Path, str, str | None]":
        """Where this output's golden is recorded (``own``), which file it is checked against, the lock key of
        that file, and the machine class when that file is a variant (``<key>.<class>.safetensors``)."""
        variant = self.root / f"{check_key(key)}.{machine}.safetensors"
        if variant.exists() or (self.variant and self.writes):
            return variant, variant, f"{key}@{machine}", machine
        own, cpu = self.path_for(key, device), self.path_for(key, "cpu")
        path = own if own.exists() or device == "cpu" or not cpu.exists() else cpu
        return own, path, key if path == cpu else f"{key}@{device}", None

    def _fallback_note(self, key: str, path: Path, recorded: Mapping[str, str], env: Mapping[str, str]) -> str | None:
        """For a golden with variants but none of this machine's class: which one was used, and how."""
        mine, theirs = machine_class(env), machine_class(recorded)
        if mine == theirs or not any(self.root.glob(f"{check_key(key)}.*-*.safetensors")):
            return None
        return (f"no variant of golden {key!r} for {mine}: compared with {path.name}, recorded on {theirs}, under "
                f"the cross-device tolerance (record one here with --hub-update --hub-variant)")

    def path_for(self, key: str, device: str = "cpu") -> Path:
        suffix = ".safetensors" if device == "cpu" else f".{device}.safetensors"
        return self.root / f"{check_key(key)}{suffix}"

    def check(self, output: Any, key: str, metadata: Mapping[str, str], *, rtol: float | None = None,
              atol: float | None = None, tolerances: Mapping[str, tuple[float, float]] | None = None,
              equal_nan: bool = False, obtained_dir: "str | Path | Callable[[], Path] | None" = None,
              dependencies: "list[str] | tuple[str, ...]" = (), imports: "Iterable[str]" = (),
              trace: "Tracer | list[dict] | None" = None) -> str:
        """Compare ``output`` with golden ``key``; returns "matched", "recorded" or "updated".

        On a failure the obtained values are saved as ``<key>.obtained.safetensors`` in ``obtained_dir``
        (the pytest fixture passes a callable giving the test's ``tmp_path``, which pytest rotates, made only
        when a file is written), else beside the golden.  A pinned golden's digest is computed once per
        process while its file's size and mtime stay the same.  ``trace``: the :class:`~reprohub.golden.trace.Tracer`
        of a ``golden.trace`` block (or its fingerprints alone): recorded with the golden, and on a failure the
        report says where the change starts (:mod:`reprohub.golden.attribution`).

        Raises:
            GoldenMissingError: no golden and not updating (the message names the obtained file).
            GoldenMismatchError: the output differs; the message is the full report.
            LockMismatchError: the golden file's digest differs from the one pinned in the lock.
        """
        device = device_of(output)
        env = capture(dependencies, device, self.versions, imports)
        own, path, lock_key, variant = self._choose(key, device, machine_class(env))
        meta = {**metadata, "device": device, "environment": json.dumps(env, sort_keys=True)}
        tracer = trace if isinstance(trace, Tracer) else None
        if tracer is None and trace:
            meta["trace"] = encode(trace)
        elif tracer is not None and tracer.recording and not tracer.calls.complete():
            meta["trace"] = encode(tracer.fingerprints())  # where the call record does not hold every output
        if self.session is not None:
            self.session.touch("goldens", lock_key)
        if not path.exists():
            if self.writes:
                return self._record(own, lock_key, output, meta, "recorded", tracer)
            raise GoldenMissingError(f"a golden for {key!r} at {own}", "no such file",
                                     f"record it with `{self.accept_command}`; the obtained values were written "
                                     f"to {self._obtained(own, key, output, meta, obtained_dir)}")
        digest = self._verify_pin(lock_key, path)
        try:
            golden = load_golden(path)
        except GoldenFileError:
            if self.writes:  # --hub-update replaces a damaged golden instead of leaving it in place
                return self._record(own, lock_key, output, meta, "updated", tracer)
            raise
        recorded_env = _recorded_environment(golden)
        moved = differences(recorded_env, env) if "environment" in golden.metadata else []
        fallback = self._fallback_note(key, path, recorded_env, env) if variant is None else None
        if self.session is not None and (variant or fallback):
            self.session.notes[lock_key] = f"compared with the variant for {variant}" if variant else fallback
        if moved and self.strict_env and not self.writes:
            raise GoldenMismatchError(f"the environment golden {key!r} was recorded in (--hub-strict-env)",
                                      "; ".join(moved), "install the recorded stack (`reprohub env --lock "
                                      "hub.lock --requirements`), or re-record the golden here")
        floor = _floor(self.cross_device if path != own or fallback else None, self.cross_env if moved else None)
        result = compare(output, golden, rtol=rtol, atol=atol, tolerances=tolerances, equal_nan=equal_nan,
                         floor=floor)
        if result.ok:
            # the file (and so the environment it names) stays as recorded; the lock names that one
            self._pin(lock_key, path, digest, (_recorded_environment(golden) or None) if self.writes else None)
            return "matched"
        if self.session is not None:
            self.session.failed_goldens.add(lock_key)
        report = result.message(str(path), golden.metadata.get("commit", ""))
        tracer, replay_error = _replayed(tracer)
        record, unusable = self._calls_of(path, golden.metadata) if tracer is not None else (None, "")
        recorded = decode(golden.metadata.get("trace")) or (fingerprints_of(record) if record is not None else [])
        current = tracer.fingerprints() if tracer is not None else trace if isinstance(trace, list) else []
        attribution = first_moved(recorded, current, *_tolerance_of(output, rtol, atol, floor))
        if attribution:
            report = f"{report}\n{attribution}"
        origin = None
        if replay_error or unusable:
            origin = Attribution("not attributed", replay_error and f"the traced calls could not be run again: "
                                 f"{replay_error}" or unusable)
        elif record is not None:
            origin = attribute(record, tracer.model, tracer.calls, machine_class(env))
        if origin is not None:
            report = f"{report}\n{origin.text()}"
            if self.session is not None:
                self.session.notes[lock_key] = f"origin: {origin.origin}"
        if fallback:
            report = f"{fallback}\n{report}"
        if moved:  # above the values: did the model change, or the stack?
            used = (f"; compared with the cross-environment floor rtol {self.cross_env[0]:g}, atol "
                    f"{self.cross_env[1]:g} (hub_cross_env_rtol/atol)" if self.cross_env else "")
            report = f"the environment differs from the one recorded: {'; '.join(moved)}{used}\n{report}"
        if golden.metadata.get("input", meta.get("input")) != meta.get("input"):  # not the model: the test moved
            report = (f"the input differs from the one recorded: {printable(golden.metadata['input'] or '(none)')} "
                      f"-> {printable(meta.get('input') or '(none)')}\n{report}")
        if self.session is not None:  # for the CI job's summary and the HTML report
            outcome = ("accepted" if self.accept else "updated") if self.writes else "failed"
            self.session.reviews[lock_key] = review_record(self.session.current_test or "", outcome, result,
                                                           flatten(output), golden, moved)
            if origin is not None:
                self.session.reviews[lock_key]["attribution"] = origin.as_dict()
        if self.writes:
            if self.accept and self.session is not None:
                self.session.accepted[lock_key] = "; ".join(line.strip() for line in report.splitlines()[1:4])
            return self._record(own, lock_key, output, meta, "updated", tracer)
        raise GoldenMismatchError(f"outputs matching golden {key!r}",
                                  f"differences:\n{report}\nThe obtained values were written to "
                                  f"{self._obtained(own, key, output, meta, obtained_dir)}",
                                  f"if the change is intended: {self.accept_command}")

    def _own_root(self) -> Path:
        """The golden folder, refused where it is a link out of the folder it stands in (committed by a pull
        request: a prune would delete, and a recording write, files outside the project)."""
        return inside_project(self.root.parent, self.root, f"the golden folder {self.root.name}/")

    @staticmethod
    def _calls_of(path: Path, metadata: Mapping[str, str]) -> "tuple[CallRecord | None, str]":
        """The call record a golden names (``None`` when it names none), or why it cannot be used: attribution is
        a hint, and a record that does not match is said in one line, never trusted."""
        if not names_record(metadata):
            return None, ""
        try:
            return load_calls(path, metadata), ""
        except GoldenFileError as err:
            return None, f"{err.expected}: {err.found}"

    def _record(self, path: Path, lock_key: str, output: Any, meta: Mapping[str, str], outcome: str,
                tracer: "Tracer | None" = None) -> str:
        self._own_root()  # before the first byte is written
        path.parent.mkdir(parents=True, exist_ok=True)
        previous = _leaves_of(path) if outcome == "updated" else None
        if tracer is not None:  # the record first: the golden names its digest, and the lock pins the golden
            record = calls_record(tracer.calls, machine_class(json.loads(meta["environment"])))
            text: list[str] = []
            with beside(lambda: text.append(calls_text(record))):  # formatted while the record is hashed and written
                digest = save_calls(path, record)
            write_calls_text(path, text[0])  # only once the record it describes is in place
            meta = {**meta, RECORD_DIGEST: digest}
        else:  # an untraced recording leaves no stale record
            calls_path(path).unlink(missing_ok=True)
            calls_text_path(path).unlink(missing_ok=True)
        data = save_golden(path, output, meta)
        write_companion(path, previous)  # the text a hosted diff shows, with how it moved from the last recording
        # the digest of the bytes this test produced, not of the file as found after the write: another
        # xdist worker may have replaced it meanwhile, and its conflict must show (lock/session.py)
        self._pin(lock_key, path, hashlib.sha256(data).hexdigest(), json.loads(meta["environment"]))
        return outcome

    def _pin(self, lock_key: str, path: Path, digest: str | None = None, env: "dict | None" = None) -> None:
        """Pin the golden in the session; ``env``: the environment it was recorded in now (else the lock's stands)."""
        if self.session is None:
            return
        if self.writes:  # what a recording pins and writes stays inside the project
            self._own_root()
        if env is not None:
            env_id = environment_id(env)
            self.session.record_environment(EnvironmentPin(env_id, env))
        else:
            locked = self.session.lock.goldens.get(lock_key)
            env_id = locked.environment if locked is not None else ""
        self.session.record_golden(GoldenPin(lock_key, self._relative(path), digest or sha256_file(path), env_id))

    def _verify_pin(self, lock_key: str, path: Path) -> str | None:
        """The golden file's digest when the lock pins it (checked), else None (not computed)."""
        pin = self.session.lock.goldens.get(lock_key) if self.session is not None else None
        if pin is None or self.update:
            return None
        digest = _digest_of(path)
        if digest != pin.sha256:
            raise LockMismatchError(f"golden {lock_key} with sha256 {pin.sha256} (pinned in {self.session.lock_path})",
                                    f"{path} with sha256 {digest}", "restore the golden from version control, or "
                                    f"re-record it with `{self.accept_command}`")
        return digest

    def _relative(self, path: Path) -> str:
        """``path`` as the lock names it (relative to the lock's folder), worked out once per path a session."""
        known = self._relatives.get(path)
        if known is None:
            try:
                known = path.resolve().relative_to(self.lock_dir.resolve()).as_posix()
            except ValueError:
                known = path.as_posix()
            self._relatives[path] = known
        return known

    @staticmethod
    def _obtained(golden: Path, key: str, output: Any, meta: Mapping[str, str], folder: "str | Path | None") -> Path:
        name = golden.name.replace(".safetensors", ".obtained.safetensors")
        folder = folder() if callable(folder) else folder
        path = golden.with_name(name) if folder is None else Path(folder) / key.replace("/", "__") / name
        path.parent.mkdir(parents=True, exist_ok=True)
        save_golden(path, output, meta)
        return path
