"""How much a warm ``reprohub.load`` costs beyond importing the hubconf and calling the entrypoint.

    python benchmarks/warm_overhead.py

Both sides run the same entrypoint from the same cached commit with torch.hub's functions routed
to the same Hub (so both read the weights by memory map); the difference is reprohub's own work on
a cache hit: parse, resolve from the ref table, trust check, manifest read, import isolation.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cases  # noqa: E402

import reprohub  # noqa: E402
from reprohub.runtime.intercept import routed  # noqa: E402


def main(rounds: int = 30) -> None:
    with tempfile.TemporaryDirectory(prefix="reprohub-warm-") as tmp:
        work = Path(tmp)
        os.environ["TORCH_HOME"] = str(work / "home")
        os.environ["REPROHUB_TRUST"] = "all"
        with cases.model_host(work, 2500) as (server, weight_bytes):
            hub = reprohub.Hub()
            hub.load("acme/big:main", "big")
            folder = hub.last_repo.path
            spec = importlib.util.spec_from_file_location("direct_hubconf", folder / "hubconf.py")
            module = importlib.util.module_from_spec(spec)

            def direct():
                spec.loader.exec_module(module)
                with routed(hub):
                    module.big()

            timings = {"reprohub.load (warm)": [], "import hubconf + call": []}
            before = len(server.requests)
            for _ in range(rounds):
                start = time.perf_counter()
                hub.load("acme/big:main", "big")
                timings["reprohub.load (warm)"].append(time.perf_counter() - start)
                start = time.perf_counter()
                direct()
                timings["import hubconf + call"].append(time.perf_counter() - start)
            requests = len(server.requests) - before
    for name, values in timings.items():
        print(f"{name:<24} median {statistics.median(values) * 1000:7.2f} ms  "
              f"(min {min(values) * 1000:.2f}, max {max(values) * 1000:.2f})")
    print(f"HTTP requests made by {rounds} warm loads: {requests}")


if __name__ == "__main__":
    main()
