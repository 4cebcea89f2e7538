"""The plugin's command-line options and ini keys (``pytest --help`` shows them under "reprohub")."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("reprohub", "reprohub: pinned torch hub loads and golden outputs")
    group.addoption("--hub-lock", metavar="PATH", default=None,
                    help="resolve every hub load through this lockfile (ini: hub_lock)")
    group.addoption("--hub-update", action="store_true", help="record new or changed entries and goldens; "
                    "rewrite the lock at the end of the session")
    group.addoption("--hub-offline", action="store_true", help="no network at all; missing cache entries fail")
    group.addoption("--hub-refresh", action="store_true", help="re-resolve locked refs to what they point to now "
                    "and report what changed (with --hub-update: write the new commits if everything passed)")
    group.addoption("--hub-accept", action="store_true",
                    help="accept what moved refs now give: refresh, re-record changed goldens (their differences "
                         "are shown), and write the lock if every test passed")
    group.addoption("--hub-trust", metavar="PATTERNS", default=None,
                    help="repos that may run code while recording a lock: owner/repo,owner/* or all "
                         "(ini: hub_trust); repos pinned in the lock are always trusted")
    group.addoption("--hub-prune", action="store_true",
                    help="with --hub-update: drop lock entries no test used (only from a green run of every test)")
    group.addoption("--hub-report", metavar="PATH", default=None,
                    help="write a self-contained HTML report of failed and changed goldens (tables, and pictures of "
                         "where each output moved)")
    group.addoption("--hub-variant", action="store_true",
                    help="with --hub-update: record goldens as the variant of this machine's class (CPU kernel "
                         "capability or CUDA compute capability), leaving other classes' goldens as they are")
    group.addoption("--hub-strict-env", action="store_true",
                    help="a golden recorded in another environment (torch, numpy, device, a hubconf dependency) "
                         "fails even if its values match (ini: hub_strict_env)")
    group.addoption("--hub-strict-unused", action="store_true",
                    help="fail the session when lock entries were not used by any selected test")
    group.addoption("--hub-mirror", metavar="LOCATION", action="append", default=None,
                    help="a bundle (folder, file:// or http(s):// URL) tried before the origin for pinned content; "
                         "repeatable (ini: hub_mirror; default $REPROHUB_MIRROR)")
    group.addoption("--hub-device", metavar="LIST", default=None,
                    help="comma-separated devices for tests using the hub_device fixture (default: cpu)")
    parser.addini("hub_lock", "path of the hub lockfile (like --hub-lock)", default="")
    parser.addini("hub_hermetic", "pin, replay and fence every HTTP(S) request a locked test makes (urllib, "
                  "requests, httpx...), not only torch.hub's downloads", type="bool", default=True)
    parser.addini("hub_unpinned_hosts", "hosts whose requests go to the network unpinned (a test's own servers): "
                  "name or name:port, one per line", type="linelist", default=[])
    parser.addini("hub_trust", "repos that may run while recording (like --hub-trust)", type="linelist", default=[])
    parser.addini("hub_api_url", "GitHub-compatible API base URL (default $REPROHUB_GITHUB_API_URL or GitHub's)",
                  default="")
    parser.addini("hub_golden_dir", "folder of golden files, relative to the rootdir", default="fixtures/goldens")
    parser.addini("hub_device", "default for --hub-device", default="cpu")
    parser.addini("hub_mirror", "bundle locations tried before the origin (like --hub-mirror)", type="linelist",
                  default=[])
    parser.addini("hub_strict_env", "any difference from a golden's recorded environment fails (like "
                  "--hub-strict-env)", type="bool", default=False)
    parser.addini("hub_cross_env_rtol", "rtol floor applied only where the environment differs from the "
                  "golden's (another torch, numpy, device or dependency)", default="1e-5")
    parser.addini("hub_cross_env_atol", "atol floor applied only where the environment differs", default="1e-6")
    parser.addini("hub_cross_device_rtol", "rtol floor when comparing GPU outputs with CPU goldens", default="1e-4")
    parser.addini("hub_cross_device_atol", "atol floor when comparing GPU outputs with CPU goldens", default="1e-5")
