"""Years later, without GitHub and without a bundle: Software Heritage as the last source (issue 38).

The archive is a real HTTP server on 127.0.0.1 built from git repositories made here
(:mod:`reprohub.testing.swhost`): revisions from ``git rev-parse``, vault states new -> pending -> done,
tarballs from git's own objects.  The GitHub look-alike is stopped before each fallback.
"""

import io
import json
import os
import tarfile

import pytest

from reprohub import Hub
from reprohub.cli import main
from reprohub.errors import ArchiveError, AuthError, HashMismatchError, LockfileError, OfflineError, SourceError
from reprohub.fetch.gittree import SWHID_DIR
from reprohub.fetch.tararchive import extract_tar
from reprohub.lock.lockfile import Lockfile, RepoPin
from reprohub.lock.session import LockSession
from reprohub.sources.swhid import tree_identity
from reprohub.testing.gitrepo import GitRepo
from reprohub.testing.swhost import ArchiveHost

from .conftest import FAST_POLICY, run_locked, serve_repo, tiny_repo_files

PLAIN_HUBCONF = """
dependencies = ["torch"]

def doubler():
    import torch
    from plain.scale import FACTOR
    return torch.nn.Identity() if FACTOR == 1 else (lambda x: x * FACTOR)
"""

PLAIN_FILES = {"hubconf.py": PLAIN_HUBCONF, "plain/__init__.py": "", "plain/scale.py": "FACTOR = 2\n",
               "tools/run.sh": "#!/bin/sh\necho hi\n", "README.md": "a plain repo\n"}


def plain_repo(server, tmp_path, extra: dict | None = None, executable: str = "tools/run.sh") -> GitRepo:
    """acme/plain: an executable file and a symlink, as real repos have (tag v1)."""
    repo = serve_repo(server, tmp_path, "plain", {**PLAIN_FILES, **(extra or {})})
    os.chmod(repo.path / executable, 0o755)
    os.symlink("README.md", repo.path / "README.link")
    repo.git("add", "--all")
    repo.git("commit", "--quiet", "-m", "an executable and a link")
    repo.tag("v1")
    return repo


@pytest.fixture
def archive(monkeypatch):
    with ArchiveHost() as host:
        monkeypatch.setenv("REPROHUB_SWH_URL", host.url)
        monkeypatch.setenv("REPROHUB_SWH_POLL_MAX", "0.01")
        yield host


def recorded(server, tmp_path, spec: str) -> tuple[Lockfile, object]:
    """What `--hub-update` pins for ``spec``, and the resolved repo (fetched from the origin)."""
    session = LockSession(Lockfile(), "hub.lock", update=True)
    hub = Hub(hub_dir=tmp_path / "recorder", github_api_url=server.api_url, pins=session, policy=FAST_POLICY)
    hub.recorder.listeners.append(session.observe)
    resolved = hub.resolve(spec, verbose=False)
    return session.result(), resolved


def origin_gone(server, tmp_path, archive) -> tuple:
    """acme/plain:v1 recorded from its origin, then the origin stopped and the commit archived: (repo, lock)."""
    repo = plain_repo(server, tmp_path)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    server.stop()
    archive.add_repo(repo.path)
    return repo, lock


def locked_hub(server, tmp_path, lock: Lockfile, name: str = "reviewer") -> Hub:
    return Hub(hub_dir=tmp_path / name, github_api_url=server.api_url, pins=LockSession(lock, "hub.lock"),
               policy=FAST_POLICY)


# -- identifiers in the lock -----------------------------------------------------------------------------


def test_the_computed_tree_id_is_gits_for_a_repo_with_an_executable_and_a_symlink(server, tmp_path):
    repo = plain_repo(server, tmp_path)
    lock, resolved = recorded(server, tmp_path, "acme/plain:v1")
    pin = lock.repos["acme/plain:v1"]
    assert pin.git_tree == "computed" and pin.swhid == f"swh:1:rev:{resolved.commit}" and "swh:1:rev" not in lock.dumps()
    assert pin.swhid_dir == SWHID_DIR + repo.git("rev-parse", "v1^{tree}")
    assert os.path.islink(resolved.path / "README.link") and os.stat(resolved.path / "tools/run.sh").st_mode & 0o100
    text = lock.dumps()
    assert f'swhid_dir = "{pin.swhid_dir}"' in text and Lockfile.loads(text) == lock
    from reprohub.cache.layout import manifest_beside
    from reprohub.fetch.fsutil import read_record

    kept = read_record(manifest_beside(resolved.path))["git_tree"]  # computed once, then read from the record
    assert kept == "computed:" + pin.swhid_dir.removeprefix(SWHID_DIR) and tree_identity(resolved.path).how == "computed"


def test_env_shows_both_swhids_for_citation(server, tmp_path, capsys):
    repo = plain_repo(server, tmp_path)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    lock.write(tmp_path / "hub.lock")
    assert main(["env", "--lock", str(tmp_path / "hub.lock")]) == 0
    tree = repo.git("rev-parse", "v1^{tree}")
    assert f"repo acme/plain:v1: swh:1:rev:{repo.head()}, swh:1:dir:{tree} (computed)" in capsys.readouterr().out


@pytest.mark.parametrize("extra, why", [
    ({".gitattributes": "plain/scale.py export-subst\n", "plain/scale.py": "FACTOR = 2  # $Format:%H$\n"},
     ".gitattributes sets export-subst"),
    ({"sub/.gitattributes": "*.txt eol=crlf\n", "sub/a.txt": "x\n"}, "sub/.gitattributes sets eol"),
    ({"plain/__pycache__/scale.cpython-311.pyc": b"\x00planted"}, "inside __pycache__"),
])
def test_a_tree_whose_archive_may_differ_from_the_commit_is_unknown_and_says_why(server, tmp_path, extra, why):
    repo = plain_repo(server, tmp_path, extra)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    pin = lock.repos["acme/plain:v1"]
    assert pin.swhid_dir == "" and pin.git_tree.startswith("unknown: ") and why in pin.git_tree
    assert pin.swhid == f"swh:1:rev:{repo.git('rev-parse', 'v1')}"


def test_a_submodule_makes_the_tree_id_unknown(server, tmp_path):
    repo = plain_repo(server, tmp_path)
    repo.git("update-index", "--add", "--cacheinfo", f"160000,{repo.head()},vendor/lib")  # a gitlink, as a submodule
    repo.git("commit", "--quiet", "-m", "a submodule")
    repo.tag("v1")
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    assert "vendor/lib is a submodule" in lock.repos["acme/plain:v1"].git_tree


def test_a_lock_whose_tree_swhid_is_malformed_or_unexplained_is_refused():
    for bad in (SWHID_DIR + "C" * 40, "swh:1:rev:" + "c" * 40, SWHID_DIR + "c" * 40 + "\n"):
        pin = RepoPin("acme/plain:v1", "https://api.github.com", "a" * 40, "v2:" + "0" * 64, swhid_dir=bad,
                      git_tree="computed")
        with pytest.raises(LockfileError, match="swhid_dir as swh:1:dir:<40 hex>"):
            Lockfile.loads(Lockfile({"acme/plain:v1": pin}).dumps())
    bad_dir = RepoPin("acme/plain:v1", "https://api.github.com", "a" * 40, "v2:" + "0" * 64, swhid_dir=SWHID_DIR + "c" * 40,
                      git_tree="unknown: why")
    with pytest.raises(LockfileError, match="git_tree saying how it is known"):
        Lockfile.loads(Lockfile({"acme/plain:v1": bad_dir}).dumps())


# -- the fallback ----------------------------------------------------------------------------------------


def test_a_locked_test_passes_from_the_archive_with_the_origin_stopped_and_says_so(pytester, server, tmp_path,
                                                                                  monkeypatch):
    repo = plain_repo(server, tmp_path)
    monkeypatch.setenv("REPROHUB_GITHUB_API_URL", server.api_url)
    pytester.makepyfile(test_plain="""
        import torch

        def test_doubles(hub):
            assert hub.load("acme/plain:v1", "doubler")(torch.ones(2)).tolist() == [2.0, 2.0]
    """)
    assert run_locked(pytester, "--hub-update").ret == 0
    lock_text = (pytester.path / "hub.lock").read_text()
    assert SWHID_DIR + repo.git("rev-parse", "v1^{tree}") in lock_text
    server.stop()  # years later: the origin is gone, and there is no bundle
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "fresh-machine"))
    monkeypatch.setenv("REPROHUB_SWH_TOKEN", "s3cret-token")
    with ArchiveHost() as host:
        host.add_repo(repo.path)
        host.limit_next("0")  # one 429 with Retry-After, honoured
        monkeypatch.setenv("REPROHUB_SWH_URL", host.url)
        monkeypatch.setenv("REPROHUB_SWH_POLL_MAX", "0.01")
        result = run_locked(pytester)
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "acme/plain:v1 at " in out and "came from Software Heritage" in out
    tree = repo.git("rev-parse", "v1^{tree}")
    paths = host.requests()
    assert paths[:3] == [f"GET /api/1/revision/{repo.head()}/"] * 2 + [f"POST /api/1/vault/flat/swh:1:dir:{tree}/"]
    assert paths[-1] == f"GET /api/1/vault/flat/swh:1:dir:{tree}/raw/"
    assert [h.get("Authorization") for _, _, h in host.log] == ["Bearer s3cret-token"] * len(host.log)
    assert "s3cret-token" not in out + result.stderr.str() + (pytester.path / "hub.lock").read_text()
    assert (pytester.path / "hub.lock").read_text() == lock_text  # a check run writes nothing


def test_a_tree_with_a_placeholder_is_refused_naming_the_file(server, tmp_path, archive):
    repo, lock = origin_gone(server, tmp_path, archive)
    archive.withhold(repo.git("rev-parse", "v1^{tree}"), "plain/scale.py")
    hub = locked_hub(server, tmp_path, lock)
    with pytest.raises(SourceError) as info:
        hub.resolve("acme/plain:v1", verbose=False)
    text = str(info.value)
    assert "plain/scale.py holds Software Heritage's placeholder text" in text and "REPROHUB_MIRROR" in text
    commit = lock.repos["acme/plain:v1"].commit
    assert not hub.layout.repo_dir("github", __import__("reprohub").refs.parse_ref("acme/plain:v1"), commit).exists()


def test_a_commit_the_archive_never_saw_fails_naming_it_with_the_bundle_advice(server, tmp_path, archive):
    plain_repo(server, tmp_path)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    server.stop()
    commit = lock.repos["acme/plain:v1"].commit
    with pytest.raises(SourceError) as info:
        locked_hub(server, tmp_path, lock).resolve("acme/plain:v1", verbose=False)
    text = str(info.value)
    assert f"the archive never saw swh:1:rev:{commit} (HTTP 404)" in text
    assert "a bundle brings it back" in text and "reprohub archive --lock hub.lock --save" in text
    assert archive.requests() == [f"GET /api/1/revision/{commit}/"]


def test_an_archive_whose_revision_disagrees_with_the_lock_is_refused_before_cooking(server, tmp_path, archive):
    repo = plain_repo(server, tmp_path)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    spec = "acme/plain:v1"
    from dataclasses import replace

    lock.repos[spec] = replace(lock.repos[spec], swhid_dir=SWHID_DIR + "0" * 40)  # the lock cites another tree
    server.stop()
    archive.add_repo(repo.path)
    with pytest.raises(HashMismatchError, match="swh:1:dir:0{40} for acme/plain@"):
        locked_hub(server, tmp_path, lock).resolve(spec, verbose=False)
    assert not any("vault" in r for r in archive.requests())


def test_the_archive_tree_must_match_the_locks_tree_digest(server, tmp_path, archive):
    repo = plain_repo(server, tmp_path, {".gitattributes": "plain/scale.py export-subst\n",
                                         "plain/scale.py": "FACTOR = 2  # $Format:%H$\n"})
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")  # the origin's archive rewrote scale.py
    server.stop()
    archive.add_repo(repo.path)
    with pytest.raises(HashMismatchError, match="export-subst"):
        locked_hub(server, tmp_path, lock).resolve("acme/plain:v1", verbose=False)


def test_offline_never_asks_the_archive(server, tmp_path, archive):
    repo = plain_repo(server, tmp_path)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    archive.add_repo(repo.path)
    hub = Hub(hub_dir=tmp_path / "offline", offline=True, pins=LockSession(lock, "hub.lock"))
    with pytest.raises(OfflineError):
        hub.resolve("acme/plain:v1", verbose=False)
    assert archive.log == []


def test_a_rate_limit_beyond_the_timeout_fails_at_once_saying_when(server, tmp_path, archive, monkeypatch):
    repo, lock = origin_gone(server, tmp_path, archive)
    archive.limit_next("7200")  # two hours: more than REPROHUB_SWH_TIMEOUT
    monkeypatch.setenv("REPROHUB_SWH_TIMEOUT", "60")
    with pytest.raises(AuthError, match="REPROHUB_SWH_TOKEN for a higher rate limit"):
        locked_hub(server, tmp_path, lock).resolve("acme/plain:v1", verbose=False)
    assert len(archive.log) == 1  # never hammered


def test_the_token_goes_to_the_archive_host_only(tmp_path, monkeypatch):
    from reprohub.fetch.download import Downloader
    from reprohub.sources.swh import SoftwareHeritage

    archive = SoftwareHeritage(Downloader(), url="https://archive.example.org", token="t0ken")
    assert archive._auth_for("https://archive.example.org/api/1/vault/x/raw/") == {"Authorization": "Bearer t0ken"}
    assert archive._auth_for("https://cdn.example.net/raw/x.tar.gz") == {}
    assert archive._auth_for("http://archive.example.org/api/1/") == {}  # not over plain HTTP to the same name
    assert "t0ken" not in repr(archive)


# -- before publishing -----------------------------------------------------------------------------------


def test_archive_reports_archived_and_missing_commits_and_save_posts_the_request(server, tmp_path, archive, capsys):
    repo = plain_repo(server, tmp_path)
    other = serve_repo(server, tmp_path, "tiny", tiny_repo_files("v1"))
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    lock = lock.merged(recorded(server, tmp_path, "acme/tiny:main")[0])
    lock.write(tmp_path / "hub.lock")
    archive.add_repo(repo.path)  # acme/tiny was never archived
    assert main(["archive", "--lock", str(tmp_path / "hub.lock")]) == 1
    out = capsys.readouterr().out
    assert f"archived: acme/plain:v1 at {repo.head()[:12]}" in out and SWHID_DIR in out
    assert f"missing:  acme/tiny:main at {other.head()[:12]}" in out and "--save" in out
    assert "1 of 2 pinned commits are in Software Heritage" in out and archive.saves == []
    assert main(["archive", "--lock", str(tmp_path / "hub.lock"), "--save", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    origin = server.url + "/acme/tiny"
    assert archive.saves == [origin] and report["saves"]["acme/tiny:main"]["save_request_status"] == "accepted"
    assert report["missing"]["acme/tiny:main"]["origin"] == origin and not report["complete"]
    archive.add_repo(other.path)
    assert main(["archive", "--lock", str(tmp_path / "hub.lock")]) == 0


def test_archive_names_what_only_a_bundle_keeps(server, tmp_path, archive, weights_url, capsys):
    repo = GitRepo.init(tmp_path / "tiny")
    repo.commit(tiny_repo_files("v1"), "v1")
    server.add_repo("acme/tiny", repo.path)
    archive.add_repo(repo.path)
    session = LockSession(Lockfile(), "hub.lock", update=True)
    hub = Hub(hub_dir=tmp_path / "rec", github_api_url=server.api_url, pins=session, policy=FAST_POLICY)
    hub.recorder.listeners.append(session.observe)
    hub.load("acme/tiny:main", "tiny_mlp", pretrained=True, verbose=False)
    session.result().write(tmp_path / "hub.lock")
    assert main(["archive", "--lock", str(tmp_path / "hub.lock")]) == 0
    out = capsys.readouterr().out
    assert "1 pinned weights and request bodies exist only at their origins" in out and weights_url in out


# -- the tarball is untrusted input ----------------------------------------------------------------------


def _tar(*members) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("members, why", [
    ([("top/../../evil", tarfile.REGTYPE, b"x", "")], "'..' component"),
    ([("/etc/evil", tarfile.REGTYPE, b"x", "")], "absolute path"),
    ([("top/link", tarfile.SYMTYPE, b"", "../../etc/passwd")], "a link points outside"),
    ([("top/a", tarfile.REGTYPE, b"x", ""), ("top/hard", tarfile.LNKTYPE, b"", "top/a")], "hard link"),
    ([("top/dev", tarfile.CHRTYPE, b"", "")], "device or FIFO"),
    ([("top/a", tarfile.REGTYPE, b"x", ""), ("top/a", tarfile.REGTYPE, b"y", "")], "twice"),
    ([("top/d", tarfile.SYMTYPE, b"", "."), ("top/d/x", tarfile.REGTYPE, b"y", "")], "twice"),
    ([("top/a", tarfile.REGTYPE, b"x", ""), ("other/b", tarfile.REGTYPE, b"y", "")], "one top folder"),
])
def test_an_unsafe_tarball_is_refused_and_nothing_lands_in_place(tmp_path, members, why):
    from reprohub.fetch.archive import extract_into_place

    with pytest.raises(ArchiveError, match=why):
        extract_into_place(_tar(*members), tmp_path / "tree", extract=extract_tar)
    assert not (tmp_path / "tree").exists() and not (tmp_path / "etc").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_tarball_git_tree_id_is_gits_own(server, tmp_path):
    repo = plain_repo(server, tmp_path)
    tree = repo.git("rev-parse", "v1^{tree}")
    with ArchiveHost() as host:
        host.add_repo(repo.path)
        result = extract_tar(io.BytesIO(host.tarball(tree)), tmp_path / "out")
    assert result.git_tree == tree and (tmp_path / "out/README.link").is_symlink()
    assert result.paths == ("README.link", "README.md", "hubconf.py", "plain/__init__.py", "plain/scale.py",
                            "tools/run.sh")


def test_a_git_remotes_tree_id_is_asked_of_git_even_where_an_archive_could_not_tell(server, tmp_path):
    repo = plain_repo(server, tmp_path, {".gitattributes": "plain/scale.py export-subst\n"})
    session = LockSession(Lockfile(), "hub.lock", update=True)
    hub = Hub(hub_dir=tmp_path / "git", pins=session)
    hub.recorder.listeners.append(session.observe)
    spec = f"git+file://{repo.path}#v1"
    hub.resolve(spec, source="git", verbose=False)
    pin = session.result().repos[spec]
    assert (pin.git_tree, pin.swhid_dir) == ("git", SWHID_DIR + repo.git("rev-parse", "v1^{tree}"))


def test_an_update_adds_the_swhids_to_a_lock_written_before_and_a_check_leaves_it_alone(server, tmp_path):
    from dataclasses import replace

    plain_repo(server, tmp_path)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    old = Lockfile({k: replace(p, swhid_dir="", git_tree="") for k, p in lock.repos.items()})  # as 2.2 wrote it
    check = LockSession(old, "hub.lock")
    hub = locked_hub(server, tmp_path, old, "checker")
    hub.pins = check
    hub.recorder.listeners.append(check.observe)
    hub.resolve("acme/plain:v1", verbose=False)
    assert check.changes() == []  # a check run never rewrites the lock
    update = LockSession(old, "hub.lock", update=True)
    hub.pins = update
    hub.recorder.listeners.append(update.observe)
    hub.resolve("acme/plain:v1", verbose=False)
    assert update.result().repos["acme/plain:v1"] == lock.repos["acme/plain:v1"]


def test_a_pull_request_that_edits_only_the_cited_tree_fails_the_check(server, tmp_path):
    from dataclasses import replace

    from reprohub.errors import LockMismatchError

    plain_repo(server, tmp_path)
    lock, _ = recorded(server, tmp_path, "acme/plain:v1")
    forged = Lockfile({k: replace(p, swhid_dir=SWHID_DIR + "f" * 40) for k, p in lock.repos.items()})
    hub = locked_hub(server, tmp_path, forged)
    hub.recorder.listeners.append(hub.pins.observe)
    with pytest.raises(LockMismatchError, match="swh:1:dir:f{40}, as the lock cites it"):
        hub.resolve("acme/plain:v1", verbose=False)
    honest = locked_hub(server, tmp_path, lock, "honest")
    honest.recorder.listeners.append(honest.pins.observe)
    honest.resolve("acme/plain:v1", verbose=False)  # the recorded citation checks


def test_a_vault_that_fails_or_never_finishes_is_named(server, tmp_path, archive, monkeypatch):
    repo, lock = origin_gone(server, tmp_path, archive)
    archive.polls_to_done = 10 ** 6  # pending for ever
    monkeypatch.setenv("REPROHUB_SWH_TIMEOUT", "0.3")
    with pytest.raises(SourceError, match=r"the vault to cook swh:1:dir:\w+ within REPROHUB_SWH_TIMEOUT"):
        locked_hub(server, tmp_path, lock).resolve("acme/plain:v1", verbose=False)
    polls = [r for r in archive.requests() if r.startswith("GET /api/1/vault")]
    assert 3 <= len(polls) < 100  # polled, backing off, not hammered
    real = archive.route
    archive.route = lambda method, path, body: ((200, {"status": "failed", "progress_message": "object too large"})
                                                if "/vault/" in path else real(method, path, body))
    with pytest.raises(SourceError, match="status 'failed': object too large"):
        locked_hub(server, tmp_path, lock, "again").resolve("acme/plain:v1", verbose=False)


def test_an_offline_git_remote_whose_mirror_lacks_the_commit_never_asks_the_archive(server, tmp_path, archive):
    repo = plain_repo(server, tmp_path)
    spec = f"git+file://{repo.path}#v1"
    session = LockSession(Lockfile(), "hub.lock", update=True)
    recorder = Hub(hub_dir=tmp_path / "rec", pins=session)
    recorder.recorder.listeners.append(session.observe)
    recorder.resolve(spec, source="git", verbose=False)
    archive.add_repo(repo.path)
    import shutil

    shutil.rmtree(repo.path)  # the remote is gone; offline, only the archive could have it, and it is not asked
    offline = Hub(hub_dir=tmp_path / "off", offline=True, pins=LockSession(session.result(), "hub.lock"))
    with pytest.raises((OfflineError, SourceError)):
        offline.resolve(spec, source="git", verbose=False)
    assert archive.log == []


def test_an_exhausted_rate_limit_waits_for_its_reset_or_says_when(server, tmp_path, archive, monkeypatch):
    repo, lock = origin_gone(server, tmp_path, archive)
    archive.remaining = 1  # the first answer says X-RateLimit-Remaining: 0, reset in an hour
    monkeypatch.setenv("REPROHUB_SWH_TIMEOUT", "600")
    with pytest.raises(AuthError, match="the rate limit of http://127.0.0.1:\\d+ within REPROHUB_SWH_TIMEOUT"):
        locked_hub(server, tmp_path, lock).resolve("acme/plain:v1", verbose=False)
    assert len(archive.log) == 1  # the second request was not sent into an exhausted limit


def test_a_tree_edited_or_cut_in_the_cache_is_never_cited(server, tmp_path):
    plain_repo(server, tmp_path)
    hub = Hub(hub_dir=tmp_path / "h", github_api_url=server.api_url)
    path = hub.resolve("acme/plain:v1", verbose=False).path
    (path / "plain/scale.py").write_text("FACTOR = 3\n")  # edited before the id was first computed
    assert tree_identity(path).how.startswith("unknown: the extracted files changed")
    (path / "plain/scale.py").unlink()
    assert tree_identity(path).swhid_dir == ""
