"""hub.lock: deterministic text, schema versions, errors that name the line; Hypothesis round-trips."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reprohub.errors import LockfileError, LockMismatchError
from reprohub.lock.lockfile import SCHEMA_MAJOR, SCHEMA_MINOR, ArtifactPin, GoldenPin, Lockfile, RepoPin
from reprohub.lock.session import LockSession
from reprohub.lock.record import ArtifactUse, RepoUse

CURRENT, NEWER = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}", f"{SCHEMA_MAJOR}.{SCHEMA_MINOR + 1}"

hex40 = st.from_regex(r"[0-9a-f]{40}", fullmatch=True)
hex64 = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)
text = st.text(min_size=1, max_size=40)
hosts = st.builds("{}://{}{}".format, st.sampled_from(["http", "https"]),
                  st.sampled_from(["api.github.com", "127.0.0.1:8000", "ghe.example"]), st.sampled_from(["", "/api", "/api/v3"]))
trees = hex64.map(lambda h: "v2:" + h) | hex64  # version 2, and version 1 as 1.x locks hold them
repos = st.dictionaries(text.filter(lambda k: not k.startswith("git+")), st.tuples(hosts, hex40, trees), max_size=4)
artifacts = st.dictionaries(text, st.tuples(hex64, st.integers(0, 2**53)), max_size=4)
goldens = st.dictionaries(text, st.tuples(text, hex64), max_size=4)


@pytest.mark.slow
@given(repos, artifacts, goldens)
def test_write_read_round_trips_are_byte_stable(r, a, g):
    lock = Lockfile({k: RepoPin(k, *v) for k, v in r.items()}, {k: ArtifactPin(k, *v) for k, v in a.items()},
                    {k: GoldenPin(k, *v) for k, v in g.items()})
    text_once = lock.dumps()
    again = Lockfile.loads(text_once)
    assert again == lock and again.dumps() == text_once
    reordered = Lockfile(dict(reversed(list(lock.repos.items()))), dict(reversed(list(lock.artifacts.items()))),
                         dict(reversed(list(lock.goldens.items()))))
    assert reordered.dumps() == text_once


def test_write_reports_whether_bytes_changed(tmp_path):
    lock = Lockfile({"a/b": RepoPin("a/b", "https://h", "f" * 40, "0" * 64)})
    assert lock.write(tmp_path / "hub.lock") is True
    assert lock.write(tmp_path / "hub.lock") is False
    assert "a/b" in (tmp_path / "hub.lock").read_text() and "/tmp" not in (tmp_path / "hub.lock").read_text()


@pytest.mark.parametrize("text,message", [
    ('version = "3.0"\n', "schema version 1.x or 2.x"),
    ('[repos]\n', "version = \"MAJOR.MINOR\""),
    ('version = "1.0"\n[repos."a/b"]\ncommit = "xyz"\nhost = "https://h"\ntree_sha256 = "' + "0" * 64 + '"\n',
     "commit as lower-case hex, found 'xyz' at hub.lock line 2"),
    ('version = "2.0"\n[repos."a/b"]\ncommit = "' + "f" * 40 + '"\nhost = "h.example"\ntree_sha256 = "v2:' + "0" * 64
     + '"\n', "host as the http\\(s\\) URL .* found 'h.example' at hub.lock line 2"),
    ('version = "2.0"\n[repos."a/b"]\ncommit = "' + "f" * 40 + '"\nhost = "https://h"\ntree_sha256 = "v3:' + "0" * 64
     + '"\n', "tree_sha256 as v2:"),
    ('version = "1.0"\n[artifacts."u"]\nsha256 = "' + "0" * 64 + '"\n', "fields \\['sha256', 'size'\\]"),
    ('version = "1.0"\n[repos\n', "valid TOML"),
    ('version = "1.0"\n[extra]\n', "only version, repos"),
])
def test_malformed_locks_are_refused_with_the_place(text, message):
    with pytest.raises(LockfileError, match=message):
        Lockfile.loads(text)


def test_newer_minor_version_warns():
    with pytest.warns(UserWarning, match=f"newer than {CURRENT}"):
        Lockfile.loads(f'version = "{NEWER}"\n')


def test_a_newer_minor_may_add_tables_which_are_ignored_and_the_current_minor_refuses_them():
    text = f'version = "{NEWER}"\n[provenance]\nbuilder = "x"\n[goldens."k"]\nfile = "k.st"\nsha256 = "' + "2" * 64 + '"\n'
    with pytest.warns(UserWarning, match="tables this reprohub does not know are ignored"):
        lock = Lockfile.loads(text)
    assert list(lock.goldens) == ["k"] and "provenance" not in lock.dumps()
    with pytest.raises(LockfileError, match="only version, repos"):
        Lockfile.loads(text.replace(NEWER, CURRENT))


def test_a_1x_lock_with_version_1_tree_digests_still_reads():
    text = ('version = "1.0"\n[repos."a/b:v1"]\ncommit = "' + "f" * 40 + '"\nhost = "https://api.github.com"\n'
            'tree_sha256 = "' + "0" * 64 + '"\n')
    assert Lockfile.loads(text).repos["a/b:v1"].tree_sha256 == "0" * 64


def test_an_error_deep_in_a_large_lock_names_its_line():
    """Headers are indexed in one pass (reading was quadratic: 8k entries took 19 s)."""
    lock = Lockfile(artifacts={f"https://h/{i}.pt": ArtifactPin(f"https://h/{i}.pt", "a" * 64, i) for i in range(4000)})
    text = lock.dumps().replace('size = 3999\n', 'size = -1\n')
    line = text.splitlines().index('[artifacts."https://h/3999.pt"]') + 1
    with pytest.raises(LockfileError, match=f"line {line}, "):
        Lockfile.loads(text)


def test_newer_minor_version_with_an_extra_field_is_read_and_the_field_ignored():
    text = (f'version = "{NEWER}"\n[artifacts."https://h/w.pt"]\nsha256 = "' + "1" * 64 + '"\nsize = 3\n'
            'mirror_hint = "s3://bucket/w.pt"\n')
    with pytest.warns(UserWarning, match="are ignored"):
        lock = Lockfile.loads(text)
    assert lock.artifacts["https://h/w.pt"] == ArtifactPin("https://h/w.pt", "1" * 64, 3)
    with pytest.raises(LockfileError, match="fields"):  # in this version's own schema, an extra field is an error
        Lockfile.loads(text.replace(NEWER, CURRENT))


def test_session_modes():
    lock = Lockfile({"a/b:v1": RepoPin("a/b:v1", "h", "f" * 40, "0" * 64)},
                    {"u": ArtifactPin("u", "1" * 64, 3)})
    check = LockSession(lock, "hub.lock")
    assert check.pinned_commit("h", "a/b:v1") == "f" * 40 and check.pinned_sha256("u") == "1" * 64
    with pytest.raises(LockMismatchError, match="pytest --hub-lock hub.lock --hub-update"):
        check.pinned_commit("h", "a/b:v2")
    with pytest.raises(LockMismatchError, match="artifact other"):
        check.pinned_sha256("other")
    with pytest.raises(LockMismatchError, match="tree sha256"):
        check.observe(RepoUse("a/b:v1", "h", "f" * 40, "9" * 64))
    update = LockSession(lock, "hub.lock", update=True)
    assert update.pinned_commit("h", "new/x") is None and update.pinned_sha256("u") is None
    update.current_test = "t::x"
    update.observe(ArtifactUse("u", "2" * 64, 3))
    assert [(c.key, c.old["sha256"][:1], c.new["sha256"][:1]) for c in update.changes()] == [("u", "1", "2")]
    assert update.unused() == {"repos": ["a/b:v1"], "artifacts": [], "goldens": [], "unreachable": [], "environments": [],
                               "requests": []}
    assert update.result().artifacts["u"].sha256 == "2" * 64
    refresh = LockSession(lock, "hub.lock", refresh=True)
    assert refresh.pinned_commit("h", "a/b:v1") is None


def test_export_absorb_round_trip():
    worker = LockSession(Lockfile(), "hub.lock", update=True)
    worker.current_test = "t::a"
    worker.observe(RepoUse("a/b", "h", "f" * 40, "0" * 64))
    worker.failed_goldens.add("g")
    controller = LockSession(Lockfile(), "hub.lock", update=True)
    controller.absorb(worker.export())
    assert controller.recorded == worker.recorded and controller.usage["repos"] == {"a/b": {"t::a"}}
    assert controller.failed_goldens == {"g"}
