"""reprohub beside the tools users would otherwise pick, on the same bytes from the same loopback hosts
(issue 41, goal 6): torch.hub, pooch and huggingface_hub.

What each contender verifies:
- reprohub (cache path, ``fetch_artifact``): the whole sha256, hashed while the bytes stream in.
- torch.hub ``download_url_to_file(hash_prefix=...)``: the sha256 too, while streaming (the prefix compared).
- pooch ``retrieve(known_hash=...)``: the sha256, in a second pass over the written file.
- huggingface_hub ``hf_hub_download``: nothing of the content (a HEAD to the Hub, then the CDN's bytes); the
  "+ sha256" row adds the second pass a user would run to verify them.

Every download is cold (caches cleared, untimed, before each call); contenders run interleaved.

    python benchmarks/peers.py --rounds 5
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, interleave, print_rows_in_temp  # noqa: E402

KiB = 1 << 10
THREADS = 8


def _each(threads: int):
    """Call a function on every item: one after another, or from a pool of ``threads`` (made once per case)."""
    if threads == 1:
        return lambda call, items: [call(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads)
    return lambda call, items: list(pool.map(call, items))


def peers(work: Path, rounds: int, budget_s: float = 0.0, small_files: int = 20) -> list[Row]:
    """Rows for one 1 MiB file and for ``small_files`` files of 200 KiB, one after another and from 8 threads."""
    import torch.hub

    import reprohub
    from reprohub.testing.hubhost import HubLookalike
    from reprohub.testing.server import HubServer

    one = {"w-1mib.bin": os.urandom(1024 * KiB)}
    small = {f"s-{n:02d}.bin": os.urandom(200 * KiB) for n in range(small_files)}
    hub = reprohub.Hub(hub_dir=work / "bench-hub")
    rows = []
    with HubServer() as server, HubLookalike({"acme/files": {**one, **small}}, expiry=600) as hf_host:
        hf = _hf_download(hf_host.url)
        cases = (("1 MiB, cold", one, 1), (f"{small_files} x 200 KiB one after another, cold", small, 1),
                 (f"{small_files} x 200 KiB, {THREADS} threads, cold", small, THREADS))
        for case, files, threads in cases:
            urls = {name: server.add_file(name, data) for name, data in files.items()}
            digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
            total = sum(len(data) for data in files.values())
            places = [work / p for p in ("reprohub", "torch", "pooch", "hf")]
            each = _each(threads)
            contenders = {
                "reprohub cache path": lambda: each(lambda u: hub.fetch_artifact(u, model_dir=str(places[0]),
                                                                                 progress=False), urls.values()),
                "torch.hub (hash_prefix)": lambda: each(lambda n: torch.hub.download_url_to_file(
                    urls[n], str(places[1] / n), digests[n][:10], progress=False), urls),
            }
            if importlib.util.find_spec("pooch") is not None:
                import pooch

                pooch.get_logger().setLevel("WARNING")  # a line per download otherwise

                contenders["pooch (known_hash)"] = lambda: each(lambda n: pooch.retrieve(
                    urls[n], known_hash=f"sha256:{digests[n]}", fname=n, path=places[2]), urls)
            if hf is not None:
                contenders["huggingface_hub (no hash)"] = lambda: each(lambda n: hf(n, places[3]), files)
                contenders["huggingface_hub + sha256"] = lambda: each(lambda n: _sha256_of(hf(n, places[3])), files)
            for place in places:
                place.mkdir(parents=True, exist_ok=True)
            rows += interleave(case, contenders, rounds, total, baseline="torch.hub (hash_prefix)",
                               before_each=lambda _n: _empty(places), budget_s=budget_s)
    return rows


def _hf_download(endpoint: str):
    """``hf_hub_download`` of the look-alike's ``acme/files`` into a cache folder, or None without the library
    (the endpoint is passed per call: huggingface_hub reads ``HF_ENDPOINT`` once, at its import)."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import hf_hub_download

    return lambda name, cache: hf_hub_download("acme/files", name, cache_dir=str(cache), endpoint=endpoint)


def _sha256_of(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _empty(places: list[Path]) -> None:
    for place in places:
        shutil.rmtree(place, ignore_errors=True)
        place.mkdir(parents=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per contender, at least")
    args = parser.parse_args(argv)
    return print_rows_in_temp("reprohub-peers-", lambda work: peers(work, args.rounds, args.budget))


if __name__ == "__main__":
    sys.exit(main())
