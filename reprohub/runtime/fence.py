"""What the client patches of :mod:`reprohub.runtime.network` do not see, shown to the answerer all the same.

A raw socket, a client reprohub does not patch (aiohttp, pycurl) and a subprocess (yolov5 falls back
to ``curl``) reach the network past the interception.  An audit hook (:func:`sys.addaudithook`, PEP
578) sees them: while an answerer is set, a connection or a datagram (``sendto``, ``sendmsg``) to another
machine (loopback and Unix sockets stay allowed: a test's own servers) and a downloading subprocess (``curl``, ``wget``, ``git fetch``...)
are handed to ``Answerer.refuse``, which raises before anything is sent; a lookup of a name that is not
loopback is handed to ``Answerer.lookup``, which refuses it in a check or offline (where a name resolves
is not known before asking, so the decision is by name), and a refused connection names the name the
thread last resolved.  Not covered: a C extension
that opens sockets without Python's audit events, and a subprocess this list does not name.

An audit hook cannot be removed, so it is added once and costs a set lookup per event while no answerer
is set (the benchmark ``benchmarks/hermetic.py`` measures it).

Example:
    >>> import socket
    >>> with socket.socket() as sock:
    ...     network_use("socket.connect", (sock, ("93.184.216.34", 443)), name="example.org")
    'a connection to 93.184.216.34:443 (example.org) (a raw socket or a client reprohub does not answer)'
    >>> network_use("subprocess.Popen", ("/usr/bin/curl", ["curl", "-sSL", "https://x/w.pt"], None, None))
    'the subprocess `curl -sSL https://x/w.pt`'
    >>> network_use("subprocess.Popen", ("git", ["git", "-C", "/src/fetch", "describe", "--tags"], None, None)) is None
    True
    >>> network_use("os.system", ("cd /tmp && GIT_TERMINAL_PROMPT=0 git -C repo fetch -q",))
    'the subprocess `git -C repo fetch -q`'
    >>> network_use("subprocess.Popen", ("/bin/sh", ["/bin/sh", "-c", "timeout 9 wget -q x"], None, None))
    'the subprocess `wget -q x`'
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
import threading

from .. import settings
from .callsite import caller
from .network import current

NETWORK_TOOLS = frozenset({"curl", "wget", "aria2c", "gsutil", "gdown", "scp", "rsync", "ftp", "sftp"})
GIT_NETWORK = frozenset({"clone", "fetch", "pull", "ls-remote", "push", "submodule"})
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})
WRAPPERS = frozenset({"env", "sudo", "nohup", "exec", "timeout", "nice", "command"})
_SENDS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})  # unconnected UDP leaves by sendto
_LOOKUPS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"})
_WATCHED = _SENDS | _LOOKUPS | {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"}
_looked_up = threading.local()  # the last name this thread resolved: a refused connection names it
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
    if answerer is None:
        return
    if event in _LOOKUPS:
        name = os.fsdecode(args[0]) if isinstance(args[0], (str, bytes)) else ""
        _looked_up.name = name
        if is_name(name) and not _is_loopback(name):
            answerer.lookup(name, caller())
        return
    name = getattr(_looked_up, "name", "") if event in _SENDS else ""
    _looked_up.name = ""  # a name is told with the one send that follows its lookup, never a later one
    what = network_use(event, args, name)
    if what:
        answerer.refuse(what, caller())


def is_name(host: str) -> bool:
    """Whether ``host`` is a name to resolve (not empty, not an address literal).

    Example:
        >>> is_name("example.org"), is_name("93.184.216.34"), is_name("::1"), is_name("")
        (True, False, False, False)
    """
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return bool(host)
    return False


def network_use(event: str, args: tuple, name: str = "") -> "str | None":
    """What of an audited event would reach the network: a connection to another machine, or a
    subprocess that downloads (``curl``, ``wget``, ``git fetch``...); ``None`` for anything else.
    ``name``: the name the code resolved just before (shown beside the address it connects to)."""
    if event in _SENDS:
        sock, address = args
        if address is None or sock.family not in (socket.AF_INET, socket.AF_INET6) or _is_loopback(address[0]):
            return None  # sendmsg on a connected socket: its connect was watched
        kind = "a connection to" if event == "socket.connect" else "a datagram to"
        named = f" ({name})" if is_name(name) else ""
        return f"{kind} {address[0]}:{address[1]}{named} (a raw socket or a client reprohub does not answer)"
    for command in _commands(args[0] if event == "os.system" else args[1]):
        name = os.path.basename(command[0])
        if name in NETWORK_TOOLS or (name == "git" and _git_subcommand(command[1:]) in GIT_NETWORK):
            return f"the subprocess `{' '.join(command)[:200]}`"
    return None


def _commands(command) -> list[list[str]]:
    """The simple commands a process start runs: its argument list, or each command of a shell line
    (``os.system``, ``sh -c``), without the wrappers and assignments in front (``env``, ``sudo``, ``X=1``)."""
    if isinstance(command, (str, bytes, os.PathLike)):
        command = [command]
    argv = [os.fsdecode(part) for part in command or ()]
    if len(argv) >= 3 and os.path.basename(argv[0]) in SHELLS and argv[1] == "-c":
        lines = [argv[2]]
    elif len(argv) == 1:
        lines = argv
    else:
        lines = []
    found = [segment.split() for line in lines for segment in re.split(r"[;&|()\n`]+", line)] if lines else [argv]
    return [words for words in (_without_wrappers(w) for w in found) if words]


def _without_wrappers(words: list[str]) -> list[str]:
    wrapped = False  # after a wrapper, its options and a duration (``timeout -k 1 9 curl``) go too
    while words and (os.path.basename(words[0]) in WRAPPERS or re.fullmatch(r"\w+=\S*", words[0])
                     or (wrapped and re.fullmatch(r"-\S*|[\d.]+[smhd]?", words[0]))):
        wrapped = wrapped or os.path.basename(words[0]) in WRAPPERS
        words = words[1:]
    return words


def _git_subcommand(args: list[str]) -> "str | None":
    """``fetch`` of ``git -C repo --git-dir x fetch origin``: the first word that is no option or its value."""
    words = iter(args)
    for word in words:
        if word in ("-C", "-c", "--git-dir", "--work-tree", "--namespace"):
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _is_loopback(host) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def http_only_clients() -> "list[str]":
    """Make the clients that can download through native sockets (which no patch and no audit hook sees) use
    HTTP, which is answered: huggingface_hub's Xet transfers (``HF_HUB_DISABLE_XET``, read by huggingface_hub
    at each download; set for an already imported copy too).  Returns what it changed, for the session header."""
    changed = []
    if settings.set_default(settings.HF_HUB_DISABLE_XET, "1"):
        changed.append("HF_HUB_DISABLE_XET=1 (huggingface_hub downloads over HTTP, which reprohub pins; hf_xet's "
                       "native transfers would escape it)")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and settings.read_flag(settings.HF_HUB_DISABLE_XET):
        constants.HF_HUB_DISABLE_XET = True
    return changed
