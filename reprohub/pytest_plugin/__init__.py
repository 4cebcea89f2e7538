"""pytest plugin: ``pytest --hub-lock hub.lock`` pins hub loads and checks golden outputs.

Registered through the ``pytest11`` entry point; loading it never imports torch.

Options (each also an ini setting without the dashes, ``hub_lock = hub.lock``)::

    --hub-lock PATH       resolve every hub load through this lockfile
    --hub-update          record new or changed entries and goldens, rewrite the lock at the end
    --hub-offline         no network at all; a cache miss fails with the prefetch command
    --hub-refresh         re-resolve locked refs, run against the new commits, report what moved
    --hub-accept          accept a moved ref: refresh, re-record the goldens that changed, write the lock
    --hub-trust PATTERNS  repos that may run while recording (owner/repo,owner/*,all; ini: hub_trust)
    --hub-strict-unused   lock entries no test used are an error, not a warning
    --hub-device LIST     devices for tests that take the ``hub_device`` fixture (cpu,cuda)
    --hub-mirror LOC      a bundle tried before the origin for pinned content (repeatable)
    --hub-variant         with --hub-update: record goldens as this machine class's variant
    --hub-report PATH     a self-contained HTML report of failed and changed goldens

Every HTTP(S) request a locked test makes -- repo code, test code, any library through urllib, requests
or httpx -- is pinned in the lock, replayed and fenced like torch.hub's downloads
(:mod:`reprohub.lock.hermetic`; ini ``hub_hermetic = false`` turns that off).

With ``$GITHUB_STEP_SUMMARY`` set (GitHub Actions), a Markdown summary of the session is appended to it.

Fixtures: ``hub`` (session: a :class:`~reprohub.hub.Hub` bound to the lock and
options), ``golden`` (``golden.check(output, key=None, rtol=None, atol=None)``),
``hub_device`` (a ``torch.device``; CUDA cases skip with a reason when no GPU).

Example test::

    def test_tiny_mlp(hub, golden, hub_device):
        model = hub.load("acme/tiny:v1", "tiny_mlp", pretrained=True).to(hub_device).eval()
        golden.check(model(golden.input(4, 3, device=hub_device)))

The package: this module (fixtures and the hooks pytest finds here), :mod:`.options` (the command-line
options and ini keys), :mod:`.state` (``HubPlugin``: one session's state and its per-test hooks),
:mod:`.finish` (writing the lock at the end), :mod:`.reports` (failure reports and the summary).
"""

from __future__ import annotations

import pytest

from ..errors import SettingError
from ..golden.checker import GoldenChecker, test_key  # noqa: F401  (test_key: re-exported)
from ..hub import Hub
from .options import pytest_addoption  # noqa: F401  (a hook pytest finds here)
from .state import WORKER_KEY, HubPlugin  # noqa: F401


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hub_device(name): run this test on the named device only")
    config.pluginmanager.register(HubPlugin(config), "reprohub-state")


def _state(config: pytest.Config) -> "HubPlugin":
    return config.pluginmanager.get_plugin("reprohub-state")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "hub_device" in metafunc.fixturenames:
        devices = _state(metafunc.config).devices
        marker = metafunc.definition.get_closest_marker("hub_device")
        if marker is not None:
            devices = [d for d in devices if d == marker.args[0]] or [marker.args[0]]
        metafunc.parametrize("hub_device", devices, indirect=True, ids=devices)


@pytest.fixture(scope="session")
def hub(request: pytest.FixtureRequest) -> Hub:
    """The loader bound to the lock and options: ``hub.load/list/help`` as ``reprohub.load/list/help``."""
    return _state(request.config).hub


@pytest.fixture
def hub_device(request: pytest.FixtureRequest):
    """The torch.device this test runs on (from --hub-device); CUDA skips cleanly without a GPU."""
    import torch

    name = getattr(request, "param", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SettingError("--hub-device (or the hub_device ini key) naming devices torch knows, e.g. cpu,cuda,cuda:1",
                           repr(name), "fix the device list; torch.device() must accept each name") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        pytest.skip(f"{name} requested (--hub-device) but torch.cuda.is_available() is False on this machine")
    return device


@pytest.fixture
def golden(request: pytest.FixtureRequest, hub: Hub):
    """Compare outputs with recorded goldens: ``golden.check(output, key=None, rtol=None, atol=None)``."""
    hub.last_load = hub.last_repo = None  # "the last load" means the last one in this test
    hub.last_nested = ()
    # the test's tmp_path only if an obtained file is written (making one costs ~3 ms a test)
    checker = GoldenChecker(_state(request.config).golden_store, hub, lambda: request.getfixturevalue("tmp_path"),
                            request.node.nodeid)
    with checker.deterministic():
        yield checker
