"""Tools for trying hubconf repos without the internet: a GitHub-compatible host, Git repos, the demo.

* :mod:`~reprohub.testing.server` -- ``HubServer``: local Git repos and files on 127.0.0.1 (``reprohub serve``);
* :mod:`~reprohub.testing.gitrepo` -- ``GitRepo``: build real Git history in a few calls;
* :mod:`~reprohub.testing.demo` -- ``reprohub demo``, the built-in example.
"""
