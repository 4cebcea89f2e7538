"""Where repo code comes from: a spec's ref -> a commit, and a commit -> files on disk.

* :mod:`~reprohub.sources.github` -- any GitHub-compatible host (REST API + archives);
* :mod:`~reprohub.sources.git` -- any remote the ``git`` command can fetch;
* :mod:`~reprohub.sources.trust` -- which repos may run code here.

Every source has ``key`` (its cache folder), ``url``, ``resolve(repo) -> commit``
and ``materialize(repo, commit, dest, progress) -> ExtractResult``; none knows
about hubconf.

Example:
    >>> from reprohub.sources import git_spec_parts
    >>> git_spec_parts("git+file:///srv/models.git#v1")[1].ref
    'v1'
"""

from .git import GIT_PREFIX, GitSource, git_source_key, git_spec_parts
from .github import GitHubSource

__all__ = ["GIT_PREFIX", "GitHubSource", "GitSource", "git_source_key", "git_spec_parts"]
