"""What hermetic locks cost (issue 27): a warm locked suite of N tests with the recorder on and off.

Each test loads a small hub model from the warm cache and checks its golden, as in ``ci_suite.py``;
in the second pair each test also downloads its input (``urllib.request.urlopen``), the habit the
recorder exists for.  ``off`` is the same suite with ``-o hub_hermetic=false`` (the baseline): its
input download goes to the host on 127.0.0.1, while ``on`` answers it from the pinned body in the
cache.  Every run is a fresh ``python -m pytest`` process; rounds are interleaved.  Target: ``on``
within 3% of ``off``.

    python benchmarks/hermetic.py --tests 200 --rounds 3
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from ci_suite import _pytest  # noqa: E402
from harness import Row, child_env, interleave, suite_main  # noqa: E402

TESTS = """
import urllib.request

import pytest, torch

@pytest.mark.parametrize("i", range({n}))
def test_model(hub, golden, i):
    {fetch}
    model = hub.load("acme/big:main", "big", verbose=False)
    with torch.no_grad():
        golden.check(model(golden.input(4, {width})))
"""
FETCH = 'assert len(urllib.request.urlopen("{url}").read()) == 4096  # the test downloads its input'


def hermetic_suite(work: Path, tests: int, rounds: int, width: int = 350) -> list[Row]:
    """Rows for the recorder on and off, without and with an input download per test."""

    from cases import model_host

    rows = []
    with model_host(work, width) as (server, _):
        url = server.add_file("input.bin", b"\x01" * 4096)
        for name, fetch in (("models", "pass"), ("models + an input download", FETCH.format(url=url))):
            folder = work / name.replace(" ", "-").replace("+", "and")
            folder.mkdir(parents=True)
            (folder / "test_models.py").write_text(textwrap.dedent(TESTS).format(n=tests, width=width, fetch=fetch))
            (folder / "pytest.ini").write_text("[pytest]\nhub_golden_dir = goldens\n")
            env = child_env(work, TORCH_HOME=str(folder / "torch-home"), REPROHUB_TRUST="all")
            _pytest(folder, env, ["--hub-lock", "hub.lock", "--hub-update"])  # record once: the lock pins the input
            check = ["--hub-lock", "hub.lock"]
            runs = {"recorder off": lambda: _pytest(folder, env, [*check, "-o", "hub_hermetic=false"]),
                    "recorder on": lambda: _pytest(folder, env, check)}
            for run in runs.values():
                run()  # warm the caches, untimed
            rows += interleave(f"{name}: {tests} locked tests (warm cache)", runs, rounds, baseline="recorder off")
    return rows


def main(argv=None) -> int:
    return suite_main(__doc__, hermetic_suite, argv)


if __name__ == "__main__":
    sys.exit(main())
