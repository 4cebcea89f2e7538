"""Ref parsing: examples and Hypothesis properties."""

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from reprohub.errors import RefError
from reprohub.refs import RepoRef, format_ref, is_full_commit, parse_ref

owners = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}", fullmatch=True)
names = st.from_regex(r"[A-Za-z0-9_.-]{1,100}", fullmatch=True).filter(lambda n: n not in (".", ".."))
ref_parts = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}", fullmatch=True).filter(
    lambda p: not p.endswith((".", ".lock")) and ".." not in p)
# git refuses a ref that starts with '-' (it would read as an option), so valid refs never do
refs = st.lists(ref_parts, min_size=1, max_size=4).map("/".join).filter(lambda r: not r.startswith("-"))


@example("a", "b", "x/-y")  # only the ref's first character may not be '-'
@given(owners, names, st.none() | refs)
def test_parse_format_round_trip(owner, name, ref):
    spec = f"{owner}/{name}" + (f":{ref}" if ref is not None else "")
    parsed = parse_ref(spec)
    assert (parsed.owner, parsed.name, parsed.ref) == (owner, name, ref)
    assert format_ref(parsed) == spec and parse_ref(str(parsed)) == parsed


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_any_text_parses_or_raises_ref_error_only(text):
    try:
        parsed = parse_ref(text)
    except RefError as err:
        assert isinstance(err, ValueError) and err.found
    else:
        assert str(parsed) == text


@pytest.mark.parametrize("spec,part", [
    ("noslash", "0 '/'"), ("a/b/c", "2 '/'"), ("a/b:", "empty ref"), ("/b", "owner ''"),
    ("a/", "repo name ''"), ("a/..", "repo name '..'"), ("a/b:x..y", "'..'"), ("a/b:c:d", "':'"),
    ("a/b:x/.hidden", "'.hidden'"), ("a/b:-x", "leading '-'"), ("a/b:feat.lock", "'.lock'"), ("a/b:sp ace", "' '"),
    ("-bad/b", "owner '-bad'"), ("a/b:x@{1}", "'@{'"), ("a/b:/x", "leading"),
])
def test_invalid_specs_name_the_bad_part(spec, part):
    with pytest.raises(RefError) as info:
        parse_ref(spec)
    assert part in str(info.value)


def test_torch_hub_crash_cases_give_ref_errors():
    for spec in ("a/b:c:d", "a/b/c", "abc"):
        with pytest.raises(ValueError, match=re.escape(spec)):
            parse_ref(spec)


def test_full_commit_detection():
    assert RepoRef("a", "b", "f" * 40).is_full_commit
    assert not RepoRef("a", "b", "F" * 40).is_full_commit and not is_full_commit("abc")


# Near-valid refs: the characters and shapes git's rules are about, so most examples sit on an edge.
near_valid_refs = st.lists(
    st.sampled_from(["a", "b1", "-", "_", ".", "..", "/", "//", "@", "@{", "{", "}", "~", "^", "?", "*", "[", "\\",
                     " ", ".lock", "lock", "x.lock", "\x7f", "\t", "é"]),
    min_size=1, max_size=6).map("".join)


@settings(max_examples=300)
@example("a/.b")
@example("a.lock/b")
@example("@")
@example("x@{1}")
@example("-x")
@given(near_valid_refs)
def test_ref_rules_agree_with_git_check_ref_format(ref):
    """Oracle: ``git check-ref-format``; a ref reprohub accepts, git accepts, and the other way round."""
    import subprocess

    git_ok = subprocess.run(["git", "check-ref-format", "--allow-onelevel", ref], capture_output=True).returncode == 0
    try:
        parse_ref(f"owner/repo:{ref}")
        ours = True
    except RefError:
        ours = False
    assert ours == git_ok, ref
