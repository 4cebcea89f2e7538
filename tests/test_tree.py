"""The tree digest: one content address per tree, whatever its names hold; version 1 only where unambiguous."""

import hashlib
import zipfile

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from reprohub.errors import ArchiveError
from reprohub.fetch.archive import extract_zip, zip_tree_digest
from reprohub.fetch.treefiles import tree_digest, write_tree_zip
from reprohub.fetch.tree import TreeDigests, digest_v1, digest_v2, is_tree_path

EVIL = hashlib.sha256(b"import os; os.system('evil')\n").hexdigest()
HUBCONF = hashlib.sha256(b"def m(): pass\n").hexdigest()
SAME = hashlib.sha256(b"same bytes").hexdigest()
# X: hubconf.py and a file whose name forges a second version-1 line; Y: that line made real
FORGED_X = {"hubconf.py": ("-", HUBCONF), f"a\n- {EVIL} a0.py": ("-", SAME)}
FORGED_Y = {"hubconf.py": ("-", HUBCONF), "a": ("-", SAME), "a0.py": ("-", EVIL)}


def old_digest(entries):
    """reprohub's version-1 encoding exactly as it was, newline or not (what old locks hold)."""
    lines = "".join(f"{kind} {digest} {rel}\n" for rel, (kind, digest) in sorted(entries.items()))
    return hashlib.sha256(lines.encode("utf-8", "surrogateescape")).hexdigest()


def test_the_reported_forgery_shares_the_old_digest_but_not_the_new_one():
    assert old_digest(FORGED_X) == old_digest(FORGED_Y)  # the attack, reproduced
    assert digest_v2(FORGED_X) != digest_v2(FORGED_Y)
    assert digest_v1(FORGED_X) is None and digest_v1(FORGED_Y) == old_digest(FORGED_Y)
    assert not TreeDigests.of(FORGED_X).matches(old_digest(FORGED_Y))  # X cannot pass for a version-1 pin


names = st.text(alphabet="a0- \n/.x:", min_size=1, max_size=8)
contents = st.sampled_from([EVIL, HUBCONF, SAME])
trees = st.dictionaries(names, st.tuples(st.sampled_from("-xl"), contents), min_size=1, max_size=5)


@example(FORGED_X, FORGED_Y)
@example({"a": ("-", SAME)}, {"a": ("x", SAME)})  # the mode counts
@example({"a": ("l", SAME)}, {"a": ("-", SAME)})  # a link is not a file with its target as content
@given(trees, trees)
def test_v2_is_injective_over_adversarial_names(a, b):
    assert (digest_v2(a) == digest_v2(b)) == (a == b)
    if digest_v1(a) is not None and digest_v1(b) is not None:  # version 1 where it is defined: injective too
        assert (digest_v1(a) == digest_v1(b)) == (a == b)


def test_pycache_is_not_part_of_a_tree(tmp_path):
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "hubconf.py").write_text("def m(): pass\n")
    (src / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"planted bytecode")
    assert not is_tree_path("pkg/__pycache__/m.cpython-311.pyc")
    with zipfile.ZipFile(tmp_path / "repo.zip", "w") as zf:  # what a repo committing __pycache__ serves
        zf.writestr("hubconf.py", "def m(): pass\n")
        zf.writestr("pkg/__pycache__/m.cpython-311.pyc", b"planted bytecode")
    result = extract_zip(tmp_path / "repo.zip", tmp_path / "out", strip_top=False)
    assert not (tmp_path / "out" / "pkg" / "__pycache__").exists() and result.files == 1
    # extraction, the digest from disk, the digest of the zip and a bundle zip agree
    assert result.digests == tree_digest(src) == tree_digest(tmp_path / "out") == zip_tree_digest(tmp_path / "repo.zip")
    write_tree_zip(src, tmp_path / "bundle.zip")
    assert zip_tree_digest(tmp_path / "bundle.zip") == result.digests


def zip_with(tmp_path, write) -> str:
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        write(zf)
    return str(path)


def link(zf, name, target):
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (0o120777) << 16
    zf.writestr(info, target)


@pytest.mark.parametrize("case,message", [
    ("duplicate", "two members named 'hubconf.py'"),
    ("loop", "loop of links"),
    ("not_utf8", "bad.zip"),
    ("flipped", "'hubconf.py'"),
    ("truncated", "bad.zip"),
    ("file_and_folder", "'pkg'"),
])
def test_damaged_or_ambiguous_archives_are_archive_errors_naming_the_member(tmp_path, case, message):
    import warnings

    if case == "duplicate":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name it is asked to write
            path = zip_with(tmp_path, lambda zf: (zf.writestr("hubconf.py", "a = 1\n"), zf.writestr("hubconf.py", "b")))
    elif case == "loop":
        path = zip_with(tmp_path, lambda zf: (zf.writestr("hubconf.py", "x"), link(zf, "a", "b"), link(zf, "b", "a")))
    elif case == "not_utf8":
        path = zip_with(tmp_path, lambda zf: zf.writestr("hubconf.py", "x"))
        data = bytearray(open(path, "rb").read())
        for at in (7, data.rfind(b"PK\x01\x02") + 9):  # the UTF-8 flag in both headers, then a byte no UTF-8 has
            data[at] |= 0x08
        data = data.replace(b"hubconf.py", b"hubc\xffnf.py")
        open(path, "wb").write(bytes(data))
    elif case == "flipped":
        path = zip_with(tmp_path, lambda zf: zf.writestr("hubconf.py", "def m():\n    return 1\n" * 50))
        data = bytearray(open(path, "rb").read())
        data[40] ^= 0xFF  # inside the deflated body
        open(path, "wb").write(bytes(data))
    elif case == "truncated":
        path = zip_with(tmp_path, lambda zf: zf.writestr("hubconf.py", "x" * 1000))
        open(path, "r+b").truncate(60)
    else:
        path = zip_with(tmp_path, lambda zf: (zf.writestr("pkg", "a file"), zf.writestr("pkg/m.py", "x")))
    with pytest.raises(ArchiveError, match=message):
        extract_zip(path, tmp_path / "out", strip_top=False)
