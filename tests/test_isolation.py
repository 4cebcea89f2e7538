"""Import isolation and routing of torch.hub's functions while repo code runs."""

import sys

import pytest
import torch
import torch.hub
import torch.utils.model_zoo

from .conftest import serve_repo


def models_pkg(label):
    return {
        "hubconf.py": "from models import NAME\n\ndef name():\n    from models.deep import where\n    return NAME, where()\n",
        "models/__init__.py": f"NAME = {label!r}\n",
        "models/deep.py": f"def where():\n    return {label!r} + '-deep'\n",
    }


def test_two_repos_with_the_same_top_level_package(hub, server, tmp_path):
    serve_repo(server, tmp_path, "alpha", models_pkg("alpha"))
    serve_repo(server, tmp_path, "beta", models_pkg("beta"))
    assert hub.load("acme/alpha", "name") == ("alpha", "alpha-deep")
    assert hub.load("acme/beta", "name") == ("beta", "beta-deep")
    assert hub.load("acme/alpha", "name") == ("alpha", "alpha-deep")


def test_sys_path_and_modules_are_left_as_they_were(hub, server, tmp_path):
    serve_repo(server, tmp_path, "alpha", models_pkg("alpha"))
    sentinel = type(sys)("models")
    sys.modules["models"] = sentinel
    path_before = list(sys.path)
    try:
        hub.load("acme/alpha", "name")
        assert sys.modules["models"] is sentinel and "models.deep" not in sys.modules
        assert sys.path == path_before
    finally:
        sys.modules.pop("models", None)


def test_repo_code_sees_its_own_package_not_an_installed_one(hub, server, tmp_path):
    serve_repo(server, tmp_path, "shadow", {"hubconf.py": "import json\n\ndef which():\n    return json.MINE\n",
                                             "json.py": "MINE = 'repo json'\n"})
    import json

    assert hub.load("acme/shadow", "which") == "repo json"
    assert sys.modules["json"] is json and not hasattr(json, "MINE")


def test_torch_hub_functions_are_routed_and_restored(hub, server, tmp_path, weights_url):
    files = {
        "hubconf.py": (
            "import torch\nfrom torch.hub import load_state_dict_from_url\n\n"
            "def direct(url):\n    return torch.hub.load_state_dict_from_url(url, progress=False)\n\n"
            "def bound(url):\n    return load_state_dict_from_url(url, progress=False)\n\n"
            "def zoo(url):\n    import torch.utils.model_zoo as mz\n    return mz.load_url(url, progress=False)\n\n"
            "def to_file(url, dst):\n    torch.hub.download_url_to_file(url, dst, progress=False)\n\n"
            "def nested():\n    return torch.hub.load('acme/tiny:v1', 'version')\n"
        ),
    }
    originals = (torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file, torch.hub.load,
                 torch.utils.model_zoo.load_url)
    serve_repo(server, tmp_path, "router", files)
    for entry in ("direct", "bound", "zoo"):
        state = hub.load("acme/router", entry, weights_url)
        assert set(state) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    hub.load("acme/router", "to_file", weights_url, str(tmp_path / "copy.pt"))
    assert server.hits("/files/tiny-weights.pt") == 2  # one cached download + one explicit download_url_to_file
    assert [a.url for a in hub.recorder.artifacts()] == [weights_url]
    assert (torch.hub.load_state_dict_from_url, torch.hub.download_url_to_file, torch.hub.load,
            torch.utils.model_zoo.load_url) == originals


def test_nested_torch_hub_load_goes_through_reprohub(hub, server, tmp_path, tiny_repo):
    serve_repo(server, tmp_path, "outer", {
        "hubconf.py": "import torch\n\ndef nested():\n    return torch.hub.load('acme/tiny:v1', 'version')\n"})
    assert hub.load("acme/outer", "nested") == "v1"
    assert {r.spec for r in hub.recorder.repos()} == {"acme/outer", "acme/tiny:v1"}


def test_exceptions_in_repo_code_still_restore_everything(hub, server, tmp_path):
    serve_repo(server, tmp_path, "boom", {"hubconf.py": "def boom():\n    raise KeyError('inside')\n",
                                           "models/__init__.py": ""})
    original = torch.hub.load
    with pytest.raises(KeyError, match="inside"):
        hub.load("acme/boom", "boom")
    assert torch.hub.load is original and "models" not in sys.modules


def test_plain_folders_never_hide_installed_packages(hub, server, tmp_path):
    serve_repo(server, tmp_path, "docsrepo", {"hubconf.py": "import json\n\ndef dumps():\n    return json.dumps([1])\n",
                                               "json/readme.txt": "a plain folder, not a package\n"})
    assert hub.load("acme/docsrepo", "dumps") == "[1]"


THREADED = {
    "hubconf.py": (
        "import threading\n"
        "def meet(barrier):\n"
        "    from models import NAME\n"
        "    barrier.wait(timeout=20)  # passes only if every caller is inside its entrypoint at once\n"
        "    return NAME\n"
        "def outer(hub, spec):\n"
        "    out = []\n"
        "    worker = threading.Thread(target=lambda: out.append(hub.load(spec, 'meet', threading.Barrier(1))))\n"
        "    worker.start()\n"
        "    worker.join(20)\n"
        "    return out\n"
    ),
    "models/__init__.py": "NAME = 'threaded'\n",
}


def test_threads_run_entrypoints_of_one_repo_at_the_same_time(hub, server, tmp_path):
    import threading

    serve_repo(server, tmp_path, "threaded", THREADED)
    hub.load("acme/threaded", "meet", threading.Barrier(1))  # warm: resolved and extracted once
    barrier, results = threading.Barrier(4), []
    threads = [threading.Thread(target=lambda: results.append(hub.load("acme/threaded", "meet", barrier)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == ["threaded"] * 4 and not barrier.broken


def test_a_nested_load_from_a_worker_thread_does_not_deadlock(hub, server, tmp_path):
    serve_repo(server, tmp_path, "threaded", THREADED)
    assert hub.load("acme/threaded", "outer", hub, "acme/threaded") == ["threaded"]


def test_objects_from_repo_modules_pickle_after_the_load(hub, server, tmp_path, tiny_repo):
    import io
    import pickle

    for name in [n for n in sys.modules if n.partition(".")[0] == "tinynet"]:
        del sys.modules[name]  # left by an earlier test's unpickling in this process
    model = hub.load("acme/tiny:v1", "tiny_mlp")
    assert "tinynet" not in sys.modules  # still isolated ...
    again = pickle.loads(pickle.dumps(model))  # ... yet its classes can be found by name
    assert type(again) is type(model)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    assert type(torch.load(buf, weights_only=False)) is type(model)
