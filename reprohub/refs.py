"""Parse and format repo specs: ``owner/repo`` or ``owner/repo:ref``.

Parsing is pure: it never touches the disk or the network.  Names follow
GitHub's rules (owner: letters, digits, ``-`` and ``_``, at most 39; repo:
letters, digits, ``-``, ``_`` and ``.``, at most 100, never ``.`` or ``..``)
and refs follow ``git check-ref-format`` (no ``..``, no ``@{``, no control
characters, spaces or ``~^:?*[\\``, no component starting with ``.`` or ending
in ``.lock``).  Because ``:`` can never occur in a ref, the first ``:`` always
splits the spec unambiguously -- unlike torch.hub, which crashes with a bare
tuple-unpacking error on ``a/b:c:d``.

Example:
    >>> ref = parse_ref("pytorch/vision:v0.10.0")
    >>> ref.owner, ref.name, ref.ref
    ('pytorch', 'vision', 'v0.10.0')
    >>> str(ref)
    'pytorch/vision:v0.10.0'
    >>> parse_ref("pytorch/vision").ref is None
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import RefError

_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_SHORT_SHA = re.compile(r"[0-9a-f]{7,40}")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")
_SPEC_FORMAT = "owner/repo or owner/repo:ref"
MAX_REF_LENGTH = 255


@dataclass(frozen=True, order=True)
class RepoRef:
    """A parsed repo spec; ``ref`` is ``None`` when the default branch is meant.

    Example:
        >>> RepoRef("facebookresearch", "dino", "main").repo
        'facebookresearch/dino'
    """

    owner: str
    name: str
    ref: str | None = None

    def __post_init__(self) -> None:
        check_owner(self.owner)
        check_name(self.name)
        if self.ref is not None:
            check_ref(self.ref)

    @property
    def repo(self) -> str:
        """``owner/name`` without the ref."""
        return f"{self.owner}/{self.name}"

    @property
    def is_full_commit(self) -> bool:
        """True when the ref is a 40-hex commit, which needs no resolving."""
        return self.ref is not None and is_full_commit(self.ref)

    def with_ref(self, ref: str | None) -> "RepoRef":
        """The same repo at another ref."""
        return RepoRef(self.owner, self.name, ref)

    def __str__(self) -> str:
        return self.repo if self.ref is None else f"{self.repo}:{self.ref}"


def parse_ref(spec: str) -> RepoRef:
    """Parse ``owner/repo[:ref]`` into a :class:`RepoRef`.

    Raises:
        RefError: (also a ``ValueError``) naming the part that is wrong.

    Example:
        >>> parse_ref("a/b:feature/x").ref
        'feature/x'
        >>> parse_ref("a/b/c")
        Traceback (most recent call last):
        ...
        reprohub.errors.RefError: expected owner/repo or owner/repo:ref, found 'a/b/c' (2 '/' before the ':'; ...
    """
    if not isinstance(spec, str):
        raise RefError(f"a string ({_SPEC_FORMAT})", f"{type(spec).__name__} {spec!r}", "pass the spec as a str")
    repo_part, sep, ref = spec.partition(":")
    if repo_part.count("/") != 1:
        raise RefError(
            _SPEC_FORMAT,
            f"{spec!r} ({repo_part.count('/')} '/' before the ':'; exactly one separates owner and repo)",
            "write the spec as owner/repo, optionally followed by :branch, :tag or :commit",
        )
    owner, name = repo_part.split("/")
    if sep and not ref:
        raise RefError(_SPEC_FORMAT, f"{spec!r} (empty ref after ':')", "drop the ':' or name a branch, tag or commit")
    try:
        return RepoRef(owner, name, ref if sep else None)
    except RefError as err:
        raise RefError(err.expected, f"{err.found} in spec {spec!r}", err.fix) from None


def format_ref(ref: RepoRef) -> str:
    """The inverse of :func:`parse_ref`: ``format_ref(parse_ref(s)) == s``.

    Example:
        >>> format_ref(RepoRef("a", "b"))
        'a/b'
    """
    return str(ref)


def check_owner(owner: str) -> None:
    """Raise :class:`RefError` unless ``owner`` is a valid owner name."""
    if not isinstance(owner, str) or not _OWNER.fullmatch(owner):
        raise RefError(
            "an owner of 1-39 letters, digits, '-' or '_', starting with a letter or digit",
            f"owner {owner!r}",
            "check the spelling of the user or organisation",
        )


def check_name(name: str) -> None:
    """Raise :class:`RefError` unless ``name`` is a valid repo name."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise RefError(
            "a repo name of 1-100 letters, digits, '-', '_' or '.', not '.' or '..'",
            f"repo name {name!r}",
            "check the spelling of the repository",
        )


def check_ref(ref: str) -> None:
    """Raise :class:`RefError` unless ``ref`` passes ``git check-ref-format`` rules."""
    problem = _ref_problem(ref)
    if problem:
        raise RefError(
            "a git branch, tag or commit",
            f"ref {ref!r} ({problem})",
            "use the ref exactly as `git ls-remote` prints it, without 'refs/heads/'",
        )


def _ref_problem(ref: str) -> str | None:
    if not isinstance(ref, str) or not ref:
        return "empty"
    if len(ref.encode("utf-8", "surrogatepass")) > MAX_REF_LENGTH:
        return f"longer than {MAX_REF_LENGTH} bytes"
    bad = _REF_FORBIDDEN.search(ref)
    if bad:
        return f"forbidden character {bad.group()!r}"
    if ".." in ref or "@{" in ref or ref == "@":
        return "contains '..' or '@{', or is '@'"
    if ref.startswith("-"):
        return "leading '-' (it would read as an option)"
    if ref.startswith("/") or ref.endswith("/") or "//" in ref or ref.endswith("."):
        return "leading, trailing or doubled '/', or a trailing '.'"
    for part in ref.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return f"component {part!r} starts with '.' or ends with '.lock'"
    return None


def is_full_commit(ref: str) -> bool:
    """True for a full, lower-case 40-hex commit sha.

    Example:
        >>> is_full_commit("0" * 40), is_full_commit("abc1234")
        (True, False)
    """
    return bool(_FULL_SHA.fullmatch(ref))


def looks_like_short_sha(ref: str) -> bool:
    """True for 7 to 40 lower-case hex digits (which may still be a branch name)."""
    return bool(_SHORT_SHA.fullmatch(ref))
