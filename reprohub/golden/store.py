"""Golden files on disk: where each key lives, and the check/record decision.

Layout under the golden folder (ini ``hub_golden_dir``, default
``fixtures/goldens``)::

    <key>.safetensors        recorded on CPU
    <key>.cuda.safetensors   recorded on CUDA (used for CUDA outputs when present)

A CUDA output with no CUDA golden is compared with the CPU golden under the
cross-device tolerance.  Each golden's sha256 is pinned in ``hub.lock`` under
its key (``<key>@cuda`` for CUDA goldens) and checked before it is trusted.

Example:
    >>> store = GoldenStore("fixtures/goldens", ".")     # doctest: +SKIP
    >>> store.check(model(x), "acme/tiny/tiny_mlp", {})  # doctest: +SKIP
    'matched'
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..fetch.fsutil import sha256_file
from ..errors import GoldenMismatchError, GoldenMissingError, LockMismatchError
from .engine import compare, flatten, load_golden, save_golden
from ..lock.lockfile import GoldenPin
from ..lock.session import LockSession

_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@=-]*(/[A-Za-z0-9_][A-Za-z0-9_.@=-]*)*")


def check_key(key: str) -> str:
    """A golden key: ``/``-separated parts of letters, digits, ``_ . - @ =``, no part starting with ``.``."""
    if not isinstance(key, str) or not _KEY.fullmatch(key) or len(key) > 200:
        raise GoldenMismatchError("a golden key like 'acme/tiny/tiny_mlp' or 'resnet/logits-batch4'",
                                  repr(key), "pass key= made of letters, digits, '_', '-', '.', '/'")
    return key


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
                 cross_device: tuple[float, float] = (1e-4, 1e-5), accept_command: str = "pytest --hub-update") -> None:
        self.root = Path(root)
        self.lock_dir = Path(lock_dir)
        self.session = session
        self.update = update and not refresh
        self.cross_device = cross_device
        self.accept_command = accept_command

    def path_for(self, key: str, device: str = "cpu") -> Path:
        suffix = ".safetensors" if device == "cpu" else f".{device}.safetensors"
        return self.root / f"{check_key(key)}{suffix}"

    def check(self, output: Any, key: str, metadata: Mapping[str, str], *, rtol: float | None = None,
              atol: float | None = None, tolerances: Mapping[str, tuple[float, float]] | None = None,
              equal_nan: bool = False) -> str:
        """Compare ``output`` with golden ``key``; returns "matched", "recorded" or "updated".

        Raises:
            GoldenMissingError: no golden and not updating (the output is saved to a temp file named in the message).
            GoldenMismatchError: the output differs; the message is the full report.
            LockMismatchError: the golden file's digest differs from the one pinned in the lock.
        """
        device = device_of(output)
        own = self.path_for(key, device)
        fallback = self.path_for(key, "cpu")
        path = own if own.exists() or device == "cpu" or not fallback.exists() else fallback
        lock_key = key if path == fallback else f"{key}@{device}"
        meta = {**metadata, "device": device}
        if not path.exists():
            if self.update:
                return self._record(own, lock_key, output, meta, "recorded")
            raise GoldenMissingError(f"a golden for {key!r} at {own}", "no such file",
                                     f"record it with `{self.accept_command}`; the obtained values were written "
                                     f"to {self._scratch(output, meta)}")
        digest = self._verify_pin(lock_key, path)
        golden = load_golden(path)
        result = compare(output, golden, rtol=rtol, atol=atol, tolerances=tolerances, equal_nan=equal_nan,
                         cross_device=self.cross_device if path != own else None)
        if result.ok:
            self._pin(lock_key, path, digest)
            return "matched"
        if self.update:
            return self._record(own, lock_key, output, meta, "updated")
        if self.session is not None:
            self.session.failed_goldens.add(lock_key)
        report = result.message(str(path), golden.metadata.get("commit", ""))
        raise GoldenMismatchError(f"outputs matching golden {key!r}",
                                  f"differences:\n{report}\nThe obtained values were written to "
                                  f"{self._scratch(output, meta)}", f"if the change is intended: {self.accept_command}")

    def _record(self, path: Path, lock_key: str, output: Any, meta: Mapping[str, str], outcome: str) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_golden(path, output, meta)
        self._pin(lock_key, path)
        return outcome

    def _pin(self, lock_key: str, path: Path, digest: str | None = None) -> None:
        if self.session is not None:
            self.session.record_golden(GoldenPin(lock_key, self._relative(path), digest or sha256_file(path)))

    def _verify_pin(self, lock_key: str, path: Path) -> str | None:
        """The golden file's digest when the lock pins it (checked), else None (not computed)."""
        pin = self.session.lock.goldens.get(lock_key) if self.session is not None else None
        if pin is None or self.update:
            return None
        digest = sha256_file(path)
        if digest != pin.sha256:
            raise LockMismatchError(f"golden {lock_key} with sha256 {pin.sha256} (pinned in {self.session.lock_path})",
                                    f"{path} with sha256 {digest}", "restore the golden from version control, or "
                                    f"re-record it with `{self.accept_command}`")
        return digest

    def _relative(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.lock_dir.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    @staticmethod
    def _scratch(output: Any, meta: Mapping[str, str]) -> str:
        handle = tempfile.NamedTemporaryFile(prefix="reprohub-obtained-", suffix=".safetensors", delete=False)
        handle.close()
        save_golden(handle.name, output, meta)
        return handle.name
