"""Safe extraction: escapes, links, bombs, and the tree digest."""

import os
import stat
import zipfile

import pytest

from reprohub.fetch.archive import extract_into_place, extract_zip
from reprohub.fetch.treefiles import tree_digest, write_tree_zip
from reprohub.errors import ArchiveError


def make_zip(path, members):
    """members: (name, data, mode or None)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def repo_zip(tmp_path, extra=()):
    return make_zip(tmp_path / "a.zip", [
        ("o-r-abc1234/", b"", 0o40755),
        ("o-r-abc1234/hubconf.py", b"def f(): return 1\n", 0o100644),
        ("o-r-abc1234/pkg/__init__.py", b"", 0o100644),
        ("o-r-abc1234/run.sh", b"#!/bin/sh\n", 0o100755),
        *extra,
    ])


def test_extracts_github_layout_and_strips_top_folder(tmp_path):
    result = extract_zip(repo_zip(tmp_path), tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["hubconf.py", "pkg", "run.sh"]
    assert (tmp_path / "out" / "run.sh").stat().st_mode & stat.S_IXUSR
    assert result.files == 3 and result.top_folder == "o-r-abc1234/"


def test_tree_digest_ignores_archive_bytes_but_not_content(tmp_path):
    a = extract_zip(repo_zip(tmp_path), tmp_path / "a").tree_sha256
    stored = tmp_path / "s.zip"
    with zipfile.ZipFile(tmp_path / "a.zip") as src, zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info), compress_type=zipfile.ZIP_STORED)
    b = extract_zip(stored, tmp_path / "b").tree_sha256
    assert a == b
    changed = make_zip(tmp_path / "c.zip", [("o-r-abc1234/hubconf.py", b"def f(): return 2\n", 0o100644),
                                            ("o-r-abc1234/pkg/__init__.py", b"", 0o100644),
                                            ("o-r-abc1234/run.sh", b"#!/bin/sh\n", 0o100755)])
    assert extract_zip(changed, tmp_path / "c").tree_sha256 != a


@pytest.mark.parametrize("name", [
    "o-r-abc1234/../../evil.py", "/etc/evil", "o-r-abc1234/..\\evil", "C:/evil", "o-r-abc1234/a/../../../x",
])
def test_path_escapes_are_refused(tmp_path, name):
    with pytest.raises(ArchiveError, match="outside|absolute|backslash|'\\.\\.'"):
        extract_zip(repo_zip(tmp_path, [(name, b"x", 0o100644)]), tmp_path / "out", strip_top=False)
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd", "pkg/../../x"])
def test_links_out_of_the_tree_are_refused(tmp_path, target):
    archive = repo_zip(tmp_path, [("o-r-abc1234/link", target.encode(), 0o120777)])
    with pytest.raises(ArchiveError, match="link points outside"):
        extract_into_place(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".out")] == []


@pytest.mark.parametrize("chain", [
    [("a", b"."), ("b", b"a/..")],                       # each target looks inside; together they leave
    [("a", b"."), ("b", b"a/a/a/.."), ("c", b"b/etc")],
    [("d/x", b".."), ("y", b"d/x/..")],
])
def test_chained_links_that_escape_together_are_refused(tmp_path, chain):
    archive = repo_zip(tmp_path, [(f"o-r-abc1234/{name}", target, 0o120777) for name, target in chain])
    with pytest.raises(ArchiveError, match="chain of links"):
        extract_into_place(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_links_inside_the_tree_are_kept(tmp_path):
    archive = repo_zip(tmp_path, [("o-r-abc1234/alias.py", b"hubconf.py", 0o120777)])
    extract_zip(archive, tmp_path / "out")
    assert os.readlink(tmp_path / "out" / "alias.py") == "hubconf.py"


def test_size_and_count_limits(tmp_path):
    archive = repo_zip(tmp_path, [("o-r-abc1234/big.bin", b"\0" * 100_000, 0o100644)])
    with pytest.raises(ArchiveError, match="uncompressed bytes"):
        extract_zip(archive, tmp_path / "a", max_bytes=50_000)
    with pytest.raises(ArchiveError, match="members"):
        extract_zip(archive, tmp_path / "b", max_files=3)


def test_not_a_zip_is_a_clear_error(tmp_path):
    (tmp_path / "bad.zip").write_bytes(b"not a zip at all")
    with pytest.raises(ArchiveError, match="damaged"):
        extract_zip(tmp_path / "bad.zip", tmp_path / "out")


def test_threaded_extraction_matches_single_thread(tmp_path):
    members = [("t/", b"", 0o40755)] + [(f"t/d{i % 7}/f{i}.bin", os.urandom(2000 + i), 0o100644) for i in range(120)]
    archive = make_zip(tmp_path / "many.zip", members)
    one = extract_zip(archive, tmp_path / "one", threads=1)
    many = extract_zip(archive, tmp_path / "many", threads=4)
    assert one == many and one.files == 120
    for name, data, _ in members[1:]:
        assert (tmp_path / "many" / name[2:]).read_bytes() == data


@pytest.mark.parametrize("limit", [1 << 30, 4096], ids=["in-memory", "spilled-to-disk"])
def test_an_archive_held_in_a_spill_file_extracts_like_the_file(tmp_path, limit):
    from reprohub.fetch.fsutil import SpillFile

    src = tmp_path / "src"
    for i in range(80):  # enough members for the threaded writers, each reading the spill on its own
        (src / f"pkg{i % 4}").mkdir(parents=True, exist_ok=True)
        (src / f"pkg{i % 4}" / f"m{i}.py").write_text(f"X = {i}\n" * 50)
    write_tree_zip(src, tmp_path / "repo.zip")
    with SpillFile(tmp_path / "cache" / "repo", limit=limit) as spill:
        spill.write((tmp_path / "repo.zip").read_bytes())
        result = extract_zip(spill, tmp_path / "out", strip_top=False, threads=3)
        spilled = spill.path
    assert result.digests == tree_digest(src) and result.files == 80
    assert (spilled is None) == (limit > 4096) and (spilled is None or not spilled.exists())  # removed on close
