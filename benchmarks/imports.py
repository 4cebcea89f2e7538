"""What a fresh process pays before its first byte (issue 41, goal 4): ``import reprohub`` beside ``import pooch``,
and a warm ``load_state_dict_from_url`` beside torch.hub's, each in its own new Python process.

reprohub imports its HTTP stack (requests, urllib3, urllib.request, http.client) at the first request, not
with ``reprohub``: a load from a warm cache never imports it.  Each child times itself with ``perf_counter``
(the import alone; or ``import torch`` + the library + the load, the whole of what a fresh process pays for a
warm hit), so the interpreter's own start does not dilute the ratio; the ``requests_imported`` extra is what
the child found in ``sys.modules`` at the end.  Children compile to a private bytecode cache that a first,
untimed run fills (``PYTHONPYCACHEPREFIX``), as an installed package's ``.pyc`` files are: an editable
checkout under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile reprohub's source in every child.

    python benchmarks/imports.py --rounds 15
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, child_env, print_rows_in_temp  # noqa: E402

CHILD = """
import json, sys, time
start = time.perf_counter()
{timed}
print(json.dumps({{"seconds": time.perf_counter() - start, "requests": "requests" in sys.modules}}))
"""
IMPORTS = {"import reprohub": "import reprohub", "import pooch": "import pooch", "import requests": "import requests"}
WARM_LOADS = {
    "reprohub": "import torch\nimport reprohub\nreprohub.load_state_dict_from_url(sys.argv[1], progress=False)",
    "torch.hub": "import torch\nimport torch.hub\ntorch.hub.load_state_dict_from_url(sys.argv[1], progress=False)",
}


def fresh_processes(work: Path, rounds: int) -> list[Row]:
    """Rows: the imports (baseline pooch) and a warm state_dict load (baseline torch.hub), ``rounds`` children
    each, interleaved."""
    import torch

    import reprohub
    from reprohub.testing.server import HubServer

    env = child_env(work, TORCH_HOME=str(work / "torch-home"))
    present = {name: code for name, code in IMPORTS.items() if importlib.util.find_spec(code.split()[1])}
    baseline = "import pooch" if "import pooch" in present else "import requests"  # pooch: the bench extra
    rows = _interleaved("import, fresh process", present, rounds, baseline, env=env)
    buffer = work / "w.pt"
    torch.save({"w": torch.randn(256, 256)}, buffer)
    with HubServer() as server:
        url = server.add_file("w.pt", buffer.read_bytes())
        rows += _interleaved("fresh process: import torch + warm load_state_dict_from_url", WARM_LOADS,
                             rounds, "torch.hub", env=env, argument=url)
    reprohub.set_dir(None)
    return rows


def _interleaved(case: str, children: dict[str, str], rounds: int, baseline: str, env: dict[str, str],
                 argument: str = "") -> list[Row]:
    """Each child once untimed (it fills the bytecode cache and, for a load, the hub cache), then ``rounds``
    timed runs of each, interleaved."""
    rows = {name: Row(case, name, baseline=name == baseline) for name in children}
    for code in children.values():
        _child(code, env, argument)
    for _ in range(rounds):
        for name, code in children.items():
            got = _child(code, env, argument)
            rows[name].seconds.append(got["seconds"])
            rows[name].extra["requests_imported"] = got["requests"]
    return list(rows.values())


def _child(timed: str, env: dict[str, str], argument: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD.format(timed=timed), argument], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    return print_rows_in_temp("reprohub-imports-", lambda work: fresh_processes(work, args.rounds))


if __name__ == "__main__":
    sys.exit(main())
