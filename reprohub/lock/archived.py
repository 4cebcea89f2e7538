"""Before publishing: is every commit a lock pins in Software Heritage, and what only a bundle keeps.

``reprohub archive --lock hub.lock`` asks the archive once (``POST /api/1/known/``) about every pinned
commit; ``--save`` asks it to visit the origin of each missing one ("Save Code Now").  Software Heritage
keeps source code, not weights or data: the report names every pinned artifact and request body, which
exist only at their origins, and says what keeps them (a bundle, or a deposit such as Zenodo).

Example:
    >>> from reprohub.lock.lockfile import Lockfile, RepoPin
    >>> origin_url(RepoPin("acme/tiny:v1", "https://api.github.com", "f" * 40, "v2:" + "0" * 64))
    'https://github.com/acme/tiny'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..cache.layout import DEFAULT_GITHUB_API
from ..refs import parse_ref
from .lockfile import Lockfile, RepoPin


@dataclass
class ArchiveReport:
    """Which pinned commits the archive holds, what was asked to be saved, and what only origins hold."""

    archive: str
    archived: dict[str, RepoPin] = field(default_factory=dict)
    missing: dict[str, RepoPin] = field(default_factory=dict)
    saves: dict[str, dict] = field(default_factory=dict)  # spec -> the archive's answer to the save request
    origin_only: list[str] = field(default_factory=list)  # pinned artifact URLs and request keys

    @property
    def complete(self) -> bool:
        return not self.missing

    def as_json(self) -> dict:
        return {"archive": self.archive, "complete": self.complete,
                "archived": {s: _ids(p) for s, p in sorted(self.archived.items())},
                "missing": {s: {**_ids(p), "origin": origin_url(p)} for s, p in sorted(self.missing.items())},
                "saves": self.saves, "origin_only": self.origin_only}


def origin_url(pin: RepoPin) -> str:
    """The URL Software Heritage archives a pinned repo under: its web page, or a Git remote as it is."""
    if pin.spec.startswith("git+"):
        return pin.spec.removeprefix("git+").partition("#")[0]
    ref = parse_ref(pin.spec)
    host = pin.host.rstrip("/")
    if host == DEFAULT_GITHUB_API:
        web = "https://github.com"
    else:
        web = next((host[: -len(s)] for s in ("/api/v3", "/api") if host.endswith(s)), host)
    return f"{web}/{ref.owner}/{ref.name}"


def check_archive(lock: Lockfile, archive, save: bool = False) -> ArchiveReport:
    """Ask ``archive`` (a :class:`~reprohub.sources.swh.SoftwareHeritage`) about every commit ``lock`` pins."""
    report = ArchiveReport(archive.url)
    known = archive.known(sorted({pin.commit for pin in lock.repos.values()})) if lock.repos else {}
    for spec, pin in sorted(lock.repos.items()):
        (report.archived if known.get(pin.commit) else report.missing)[spec] = pin
    if save:
        for origin in sorted({origin_url(pin) for pin in report.missing.values()}):
            answer = archive.save(origin)
            for spec, pin in report.missing.items():
                if origin_url(pin) == origin:
                    report.saves[spec] = answer
    report.origin_only = sorted(lock.artifacts) + sorted(lock.requests)
    return report


def lines(report: ArchiveReport, lock_path: str) -> list[str]:
    """The report for people."""
    out = [f"archived: {spec} at {pin.commit[:12]} ({', '.join(_ids(pin).values())})"
           for spec, pin in sorted(report.archived.items())]
    for spec, pin in sorted(report.missing.items()):
        answer = report.saves.get(spec)
        told = (f"save request {answer.get('save_request_status', '?')}, task {answer.get('save_task_status', '?')}"
                f"{' (' + answer['why'] + ')' if answer.get('why') else ''}: run this again once the visit is done"
                if answer else f"`reprohub archive --lock {lock_path} --save` asks the archive to visit it")
        out.append(f"missing:  {spec} at {pin.commit[:12]} (swh:1:rev:{pin.commit}) from {origin_url(pin)}: {told}")
    total = len(report.archived) + len(report.missing)
    out.append(f"{len(report.archived)} of {total} pinned commits are in Software Heritage ({report.archive})")
    if report.origin_only:
        out.append(f"{len(report.origin_only)} pinned weights and request bodies exist only at their origins "
                   "(Software Heritage keeps code, not weights): `reprohub bundle` writes them into a bundle to "
                   "publish beside the paper, or deposit one (Zenodo)")
        out += [f"  {item}" for item in report.origin_only]
    return out


def _ids(pin: RepoPin) -> dict:
    ids = {"swhid": pin.swhid}
    if pin.swhid_dir:
        ids["swhid_dir"] = pin.swhid_dir
    return ids
