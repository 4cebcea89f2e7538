"""The Hub: one object carrying the settings of a load, and the path of one call.

``Hub.load("owner/repo:ref", "entry", ...)`` reads as a straight line:

1. **parse** the spec (:mod:`reprohub.refs`);
2. **resolve** the ref to a full commit: a full sha as is, else the lockfile's
   pin, else the cached resolution (unless ``force_reload``), else the source;
3. **materialize** the commit in the cache, once, under a lock;
4. **import** ``hubconf.py`` in isolation (:mod:`reprohub.hubconf`);
5. **call** the entrypoint with torch.hub's functions routed here
   (:mod:`reprohub.intercept`);
6. **record** the repo and every artifact used (:mod:`reprohub.record`).

The module-level functions in :mod:`reprohub` are thin wrappers over a default
Hub, as torch.hub's functions are over its global state.

Example:
    >>> hub = Hub(hub_dir=tmp, github_api_url=server.api_url)   # server: a GitHub-compatible host
    >>> model = hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True, verbose=False)
    >>> len(hub.last_repo.commit), [a.url.rsplit("/", 1)[1] for a in hub.recorder.artifacts()]
    (40, ['tiny_mlp-v1.pt'])
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import settings
from .artifacts import ArtifactMethods
from .cache.shared import shared_layouts, shared_tree
from .cache.layout import CacheLayout, get_dir
from .cache.prefetch import Prefetcher
from .cache.store import ArtifactStore
from .errors import AuthError, DownloadError, OfflineError, SourceError
from .fetch import durability
from .fetch.download import Downloader, DownloadPolicy
from .fetch.fsutil import atomic_write_json, read_record
from .fetch.locks import file_lock
from .fetch.urls import check_url
from .lock.mirror import MirrorSet
from .lock.record import Pins, Recorder, RepoUse
from .refs import RepoRef, parse_ref
from .runtime.hubconf import entrypoints, forget_repo, get_entrypoint, import_hubconf, repo_imports
from .runtime.intercept import routed
from .sources import GIT_PREFIX, GitHubSource, GitSource, git_spec_parts
from .sources.fallback import ArchiveFallback
from .sources.resolution import check_not_forked, names_a_commit, resolve_commit
from .sources.trust import check_trust

if TYPE_CHECKING:
    from .fetch.fsutil import SpillFile
    from .fetch.tree import TreeDigests

# tree digests and SWHIDs (archive extractors under them) load where used: never on a warm weights load

log = logging.getLogger("reprohub")
SOURCES = ("github", "git", "local")


@dataclass(frozen=True)
class ResolvedRepo:
    """A repo spec resolved to a commit and materialized on disk."""

    spec: str
    host: str
    commit: str
    path: Path
    digests: TreeDigests

    @property
    def tree_sha256(self) -> str:
        """The tree digest (version 2) of the extracted files."""
        return self.digests.current


class Hub(ArtifactMethods, ArchiveFallback):
    """Loader settings and the loader itself.

    Args:
        hub_dir: the cache root (default: :func:`reprohub.get_dir` at each call).
        github_api_url: base URL of a GitHub-compatible API (default ``$REPROHUB_GITHUB_API_URL``).
        token: API token (default ``$GITHUB_TOKEN``).
        offline: no network at all (default ``$REPROHUB_OFFLINE``).
        pins: a lockfile's pins (commits and digests) to enforce.
        recorder: collects what is used (a fresh one by default).
        refresh: resolve each ref anew once per Hub, as with force_reload (the lockfile's refresh
            mode; the pins themselves decide whether they still apply).
        policy: download timeouts and retries.
        mirrors: bundle locations tried before the origin for pinned content (default
            ``$REPROHUB_MIRROR``; see :mod:`reprohub.lock.mirror`); a list, or one string.
        trust: repos that may run without asking, as ``REPROHUB_TRUST`` (``owner/repo,owner/*,all``).
        origin: ``False`` never asks the origin (API, archives, weight hosts): only the
            cache and the mirrors (``reprohub fetch --from``).

    Example:
        >>> hub = Hub(hub_dir="/tmp/hub", offline=True)
        >>> hub.offline
        True
    """

    def __init__(
        self,
        hub_dir: "str | os.PathLike[str] | None" = None,
        *,
        github_api_url: str | None = None,
        token: str | None = None,
        offline: bool | None = None,
        pins: Pins | None = None,
        recorder: Recorder | None = None,
        refresh: bool = False,
        policy: DownloadPolicy | None = None,
        session=None,
        mirrors: "str | list[str] | None" = None,
        origin: bool = True,
        trust: str | None = None,
    ) -> None:
        self._hub_dir = None if hub_dir is None else os.path.expanduser(os.fspath(hub_dir))
        self.offline = settings.read_flag(settings.OFFLINE) if offline is None else offline
        self.origin = origin and not self.offline
        self.downloader = Downloader(session=session, policy=policy, offline=not self.origin)
        mirror_policy = dataclasses.replace(self.downloader.policy, retries=min(2, self.downloader.policy.retries))
        mirror_downloader = self.downloader.sibling(mirror_policy, offline=self.offline)
        self.mirrors = MirrorSet.parse(settings.read(settings.MIRROR) if mirrors is None else mirrors,
                                       mirror_downloader)
        self.shared = shared_layouts()  # read-only hub dirs, after this one and before mirrors (REPROHUB_SHARED_CACHE)
        self.store = ArtifactStore(self.downloader)
        self.prefetcher = Prefetcher(self.store)  # a locked cold load's pinned downloads, started early
        self.github = GitHubSource(github_api_url, token, self.downloader)
        self._archive = False  # the Software Heritage client, made when a pinned commit first needs it
        self.from_archive: dict[str, str] = {}  # commit -> where it came from, when that was Software Heritage
        # an API URL set for this process (argument, ini via the plugin, environment) wins over a lock's hosts
        self.api_configured = github_api_url is not None or bool(settings.read(settings.GITHUB_API_URL))
        self._lock_hosts: dict[str, GitHubSource] = {}
        self.pins = pins
        self.recorder = recorder or Recorder()
        self.refresh = refresh
        self.trust = trust
        self.last_repo: ResolvedRepo | None = None
        self.last_load: tuple[str, str] | None = None
        self.last_nested: tuple[ResolvedRepo, ...] = ()  # repos the last load's entrypoint loaded in turn
        self._depth = 0
        self._fetching_for: list[str | None] = []  # whose entrypoint runs now (innermost last)
        self._nested: list[ResolvedRepo] = []
        self._refreshed: set[tuple[str, str]] = set()
        self._layout: CacheLayout | None = None
        self._layout_for: str | None = None

    @property
    def running_repo(self) -> str | None:
        """The spec of the repo whose entrypoint (or hubconf import) runs now, innermost; ``None`` between loads.

        Example:
            >>> Hub(hub_dir=tmp).running_repo is None
            True
        """
        return self._fetching_for[-1] if self._fetching_for else None

    @property
    def hub_dir(self) -> str:
        """The cache root in use now."""
        return self._hub_dir if self._hub_dir is not None else get_dir()

    @property
    def layout(self) -> CacheLayout:
        """The paths inside :attr:`hub_dir` (which ``set_dir`` and ``TORCH_HOME`` may change between calls)."""
        hub_dir = self.hub_dir
        if self._layout is None or self._layout_for != hub_dir:
            self._layout, self._layout_for = CacheLayout(hub_dir), hub_dir
        return self._layout

    # -- torch.hub-compatible API -------------------------------------------------

    def list(self, github: str, force_reload: bool = False, skip_validation: bool = False,
             trust_repo: "bool | str | None" = "check", verbose: bool = True) -> list[str]:
        """Entrypoints of a repo, sorted; same arguments as ``torch.hub.list``.

        Example:
            >>> Hub(hub_dir=tmp).list("acme/tiny:v1", trust_repo=True, verbose=False)
            ['tiny_mlp']
        """
        repo = self.resolve(github, force_reload=force_reload, trust_repo=trust_repo, verbose=verbose,
                            skip_validation=skip_validation)
        with routed(self), repo_imports(repo.path):
            return entrypoints(import_hubconf(repo.path, reuse=True))

    def help(self, github: str, model: str, force_reload: bool = False, skip_validation: bool = False,
             trust_repo: "bool | str | None" = "check") -> str | None:
        """The docstring of an entrypoint; same arguments as ``torch.hub.help``.

        Example:
            >>> print(Hub(hub_dir=tmp).help("acme/tiny:v1", "tiny_mlp", trust_repo=True).splitlines()[0])
            A two-layer MLP (3 -> hidden -> 2).
        """
        repo = self.resolve(github, force_reload=force_reload, trust_repo=trust_repo, skip_validation=skip_validation)
        with routed(self), repo_imports(repo.path):
            return get_entrypoint(import_hubconf(repo.path, reuse=True), model).__doc__

    def load(self, repo_or_dir: str, model: str, *args: Any, source: str = "github",
             trust_repo: "bool | str | None" = "check", force_reload: bool = False, verbose: bool = True,
             skip_validation: bool = False, **kwargs: Any) -> Any:
        """Call entrypoint ``model`` of a repo; same arguments as ``torch.hub.load``.

        ``source`` is ``"github"`` (``owner/repo[:ref]``), ``"local"`` (a folder)
        or ``"git"`` (any Git remote, ``URL`` or ``URL#ref``).  ``*args`` and
        ``**kwargs`` reach the entrypoint untouched.

        Example:
            >>> model = Hub(hub_dir=tmp).load("acme/tiny:v1", "tiny_mlp", hidden=4, trust_repo=True, verbose=False)
            >>> model.fc1.out_features
            4
        """
        source = _check_source(source)
        outermost = self._depth == 0
        if outermost:
            self._nested = []
        outer = None
        if source == "local":
            path, reuse = Path(os.path.expanduser(repo_or_dir)), False
        else:
            outer = self.resolve(repo_or_dir, source=source, force_reload=force_reload, trust_repo=trust_repo,
                                 verbose=verbose, skip_validation=skip_validation)
            path, reuse = outer.path, True
        self._depth += 1
        self._fetching_for.append(outer.spec if outer else None)
        try:
            with routed(self), repo_imports(path):
                entry = get_entrypoint(import_hubconf(path, reuse=reuse), model)
                result = entry(*args, **kwargs)
        finally:
            self._depth -= 1
            self._fetching_for.pop()
        if outermost:  # "the last load" is the one the caller made, not one its entrypoint made inside
            self.last_load, self.last_repo = (repo_or_dir, model), outer or self.last_repo
            self.last_nested = tuple(self._nested)
        return result

    # -- the steps ------------------------------------------------------------------

    def resolve(self, spec: str, *, source: str = "github", force_reload: bool = False,
                trust_repo: "bool | str | None" = "check", verbose: bool = True,
                skip_validation: bool = False) -> ResolvedRepo:
        """Resolve ``spec`` to a commit, materialize it, and record it.

        With ``verbose`` (the default, as in torch.hub) the commit is also written to stderr.

        Example:
            >>> repo = Hub(hub_dir=tmp).resolve("acme/tiny:v1", trust_repo=True, verbose=False)
            >>> len(repo.commit), (repo.path / "hubconf.py").is_file()
            (40, True)
        """
        source = _check_source(source)
        src, repo = self._source_for(spec, source)
        if source == "git" and not spec.startswith(GIT_PREFIX):
            spec = GIT_PREFIX + spec  # lock entries of Git remotes are spelled git+REMOTE[#ref]
        pinned = self.pins.pinned_commit(src.url, spec) if self.pins is not None else None
        locked = pinned is not None or (self.pins is not None and self.pins.is_locked(spec))
        self._check_trust(source, src, repo, trust_repo, locked)
        commit, archive = (pinned, None) if pinned else resolve_commit(
            self.layout, src, repo, force_reload or self._needs_refresh(src.key, spec), self.origin, _interactive())
        try:
            if pinned is None and not skip_validation and source == "github" and names_a_commit(repo.ref) and self.origin:
                check_not_forked(self.layout, src, repo, commit)
            path = self.layout.repo_dir(src.content_key, repo, commit)
            tree = self.pins.pinned_tree_sha256(src.url, spec) if pinned is not None else None
            found = self._shared_tree(src, repo, commit, tree) if self.shared and not force_reload else None
            path, digests = found or (path, self._materialize(
                src, repo, commit, path, tree, verify=force_reload, archive=archive,
                on_cold=(lambda: self._prefetch_pinned(spec)) if pinned else None))
        finally:
            if archive is not None:
                archive.close()
        resolved = ResolvedRepo(spec, src.url, commit, path, digests)
        self.recorder.add_repo(RepoUse(spec, src.url, commit, digests.current, digests.legacy, str(path),
                                       self.from_archive.get(commit, "")))
        self.last_repo = resolved
        if self._depth:
            self._nested.append(resolved)
        log.debug("%s -> commit %s (%s)", spec, commit, path)
        if verbose and sys.stderr is not None:  # as torch.hub's "Using cache found in ...", on stderr
            sys.stderr.write(f"reprohub: {spec} is commit {commit} ({path})\n")
        return resolved

    def _check_trust(self, source: str, src, repo: RepoRef, trust_repo, pinned: bool) -> None:
        if source == "github":  # torch.hub's names: "owner_repo" in trusted_list, "owner_repo_ref" folders
            legacy = f"{repo.owner}_{repo.name}_{(repo.ref or 'main').replace('/', '_')}"
            check_trust(self.layout, repo.repo, f"{repo.owner}_{repo.name}", trust_repo, legacy, pinned, extra=self.trust)
        else:
            check_trust(self.layout, src.url, f"git:{src.url}", trust_repo, None, pinned, extra=self.trust)

    def _needs_refresh(self, source_key: str, spec: str) -> bool:
        """In refresh mode, re-resolve each spec once per Hub (not on every load)."""
        if not self.refresh or (source_key, spec) in self._refreshed:
            return False
        self._refreshed.add((source_key, spec))
        return True

    def _source_for(self, spec: str, source: str):
        if source == "github":
            return self._github_for(spec), parse_ref(spec)
        remote, repo = git_spec_parts(spec)
        return GitSource(remote, self.layout.git_mirror(remote), offline=not self.origin), repo

    def _github_for(self, spec: str) -> GitHubSource:
        """The host of a GitHub spec: the configured one, or, for a repo the lock pins and no API URL configured,
        the host the lock recorded it from -- which never receives the token (``GITHUB_TOKEN`` belongs to the
        configured host or github.com's, not to whatever host a reviewed-or-not ``hub.lock`` names)."""
        host = self.pins.pinned_host(spec) if self.pins is not None and not self.api_configured else None
        if host is None or host.rstrip("/") == self.github.url:
            return self.github
        if host not in self._lock_hosts:
            self._lock_hosts[host] = GitHubSource(check_url(host, f"the host of {spec} in the lock"), token="",
                                                  downloader=self.downloader)
        return self._lock_hosts[host]

    def _shared_tree(self, src, repo: RepoRef, commit: str, pinned_tree: "str | None"):
        """``(path, digests)`` of the commit's tree in a shared cache, where this cache has none of its own."""
        if read_record(self.layout.repo_manifest(src.content_key, repo, commit)):
            return None
        return shared_tree(self.shared, src.content_key, repo, commit, pinned_tree)

    def _materialize(self, src, repo: RepoRef, commit: str, path: Path, pinned_tree: str | None,
                     verify: bool = False, archive: "SpillFile | None" = None, on_cold=None) -> "TreeDigests":
        """The digests of ``commit``'s extracted tree, extracting it once; ``verify`` (force_reload)
        re-hashes a cached tree and extracts it again if its files were edited or damaged; ``on_cold()``
        runs before a tree is fetched (a locked load starts its pinned downloads then).

        A cached tree counts only as a real folder with a well-formed manifest: a link planted in the
        commit folder's place is removed and the tree extracted anew, never followed to code outside
        the cache (folders above it may be links: a cache moved to a bigger disk)."""
        from .fetch.tree import TreeDigests
        from .fetch.treefiles import files_changed
        from .sources.swhid import FROM_BUNDLE, manifest_note

        manifest_path = self.layout.repo_manifest(src.content_key, repo, commit)
        manifest = read_record(manifest_path)
        digests = TreeDigests.from_record(manifest) if manifest else None
        if digests and not verify and not durability.needs_recheck(manifest) and self.layout.holds_dir(path):
            return digests
        with file_lock(path.with_suffix(".lock"), f"fetching {repo.repo}@{commit[:12]}"):
            manifest = read_record(manifest_path)
            digests = TreeDigests.from_record(manifest) if manifest else None
            recheck = digests is not None and durability.needs_recheck(manifest)
            if digests and self.layout.holds_dir(path) and not (
                    (verify or recheck) and files_changed(path, digests, manifest)):
                if recheck:  # extracted unflushed in an earlier boot, and still intact: confirmed
                    atomic_write_json(manifest_path, {k: v for k, v in manifest.items() if k != "boot_id"})
                return digests
            forget_repo(path)
            if on_cold is not None:
                on_cold()
            result = self.mirrors.fetch_tree(pinned_tree, path, _interactive()) if pinned_tree and self.mirrors else None
            note = FROM_BUNDLE if result is not None else None
            if result is None:
                self._check_origin(f"{repo.repo}@{commit} in the cache ({path})", isinstance(src, GitSource))
                try:
                    result = src.materialize(repo, commit, path, progress=_interactive(), archive=archive)
                except (DownloadError, SourceError, AuthError) as err:
                    if not pinned_tree:
                        raise
                    result = self.from_last_source(repo, commit, path, pinned_tree, err, self._bundle_beside_lock(),
                                                   _interactive())
                    note = manifest_note(result, "archive")
            stamp = durability.stamp()  # with a boot id, neither the tree nor this record is flushed
            manifest = {"commit": commit, "host": src.url, **result.digests.record(),
                        "files": result.files, "bytes": result.bytes, "paths": list(result.paths),
                        "git_tree": note or manifest_note(result, "git" if isinstance(src, GitSource) else ""),
                        **stamp}
            atomic_write_json(manifest_path, manifest, durable=not stamp)
            return result.digests

    def _check_origin(self, what: str, local_ok: bool = False) -> None:
        """Raise :class:`OfflineError` when the origin may not be asked (offline, or ``origin=False``)."""
        if self.origin or local_ok:  # a Git source may still find the commit in its bare mirror
            return
        places = f"not cached{', not in the mirrors ' + ', '.join(self.mirrors.bases) if self.mirrors else ''}"
        why = "offline" if self.offline else "the origin is not asked (fetch --from)"
        raise OfflineError(what, f"{places}, and {why}",
                           "prefetch it online (`reprohub fetch --lock hub.lock`), or fill the cache from a bundle "
                           "that has it (`reprohub fetch --lock hub.lock --from BUNDLE`)")


def _interactive() -> bool:
    """Progress bars for repo archives only on a terminal (torch.hub shows none for them)."""
    return sys.stderr is not None and sys.stderr.isatty()


def _check_source(source: str) -> str:
    lowered = source.lower() if isinstance(source, str) else source
    if lowered not in SOURCES:
        raise SourceError('source "github", "git" or "local"', repr(source), "pass one of those")
    return lowered
