"""What the client patches of :mod:`reprohub.runtime.network` do not see, shown to the answerer all the same.

A raw socket, a client reprohub does not patch (aiohttp, pycurl) and a subprocess (yolov5 falls back
to ``curl``) reach the network past the interception.  An audit hook (:func:`sys.addaudithook`, PEP
578) sees them: while an answerer is set, a connection to another machine (loopback and Unix sockets
stay allowed: a test's own servers) and a downloading subprocess (``curl``, ``wget``, ``git fetch``...)
are handed to ``Answerer.refuse``, which raises before anything is sent.  Not covered: a C extension
that opens sockets without Python's audit events, and a subprocess this list does not name.

An audit hook cannot be removed, so it is added once and costs a set lookup per event while no answerer
is set (the benchmark ``benchmarks/hermetic.py`` measures it).

Example:
    >>> network_use("subprocess.Popen", ("/usr/bin/curl", ["curl", "-sSL", "https://x/w.pt"], None, None))
    'the subprocess `curl -sSL https://x/w.pt`'
    >>> network_use("subprocess.Popen", ("git", ["git", "describe", "--tags"], None, None)) is None
    True
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys

from .callsite import caller
from .network import current

NETWORK_TOOLS = frozenset({"curl", "wget", "aria2c", "gsutil", "gdown", "scp", "rsync", "ftp", "sftp"})
GIT_NETWORK = frozenset({"clone", "fetch", "pull", "ls-remote", "push", "submodule"})
_WATCHED = frozenset({"socket.connect", "subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"})
_hooked = False


def install_hook() -> None:
    """Add the audit hook (once a process; it does nothing while no answerer is set)."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True


def _audit(event: str, args: tuple) -> None:
    if event not in _WATCHED:
        return
    answerer = current()
    what = network_use(event, args) if answerer is not None else None
    if what:
        answerer.refuse(what, caller())


def network_use(event: str, args: tuple) -> "str | None":
    """What of an audited event would reach the network: a connection to another machine, or a
    subprocess that downloads (``curl``, ``wget``, ``git fetch``...); ``None`` for anything else."""
    if event == "socket.connect":
        sock, address = args
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or _is_loopback(address[0]):
            return None
        return f"a connection to {address[0]}:{address[1]} (a raw socket or a client reprohub does not answer)"
    words = _words(args[0] if event == "os.system" else args[1])
    names = [os.path.basename(word) for word in words]
    if NETWORK_TOOLS.intersection(names) or ("git" in names and GIT_NETWORK.intersection(names)):
        return f"the subprocess `{' '.join(words)[:200]}`"
    return None


def _words(command) -> list[str]:
    """The words of a command line (a shell string or an argument list), as a shell would split them, roughly."""
    if isinstance(command, (str, bytes, os.PathLike)):
        command = [command]
    return re.findall(r"[^\s;|&()'\"]+", " ".join(os.fsdecode(part) for part in command or ()))


def _is_loopback(host) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


