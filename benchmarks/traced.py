"""What attribution costs (issue 37): recording and checking a golden of a ResNet-18-sized model, traced (every
module call's inputs and outputs kept, :mod:`reprohub.golden.calls`) against untraced, in one run.

Each contender runs the forward pass and the golden step (record: write the golden, and the call record
when traced; check: compare, and copy the calls in memory when traced).  Targets: a traced record within 2x
the untraced one, a passing traced check within 1.2x.  Then the stages of a traced record, each beside what
it replaced (:func:`record_stages`): the forward pass under the capture (and its page faults), writing the
call record, hashing its bytes.

    python benchmarks/traced.py --rounds 5
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import Row, interleave, print_rows_in_temp  # noqa: E402


def resnet18_like():
    """ResNet-18's shape (11.7 M parameters: a 7x7 stem, four stages of two basic blocks, a linear head),
    built here so the benchmark needs no torchvision."""
    import torch
    from torch import nn

    class Basic(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
            self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x):
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + self.down(x))

    torch.manual_seed(0)
    stages, cin = [], 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        stages.append(nn.Sequential(Basic(cin, cout, stride), Basic(cout, cout, 1)))
        cin = cout
    return nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                         *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)).eval()


def traced_cost(work: Path, rounds: int, size: int = 160) -> list[Row]:
    """Rows: record and check, untraced (baseline) and traced, on a ``size`` x ``size`` image."""
    import torch

    from reprohub.golden.checker import GoldenChecker
    from reprohub.golden.store import GoldenStore

    class NoHub:
        last_repo = last_load = None
        last_nested = ()

    model = resnet18_like()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))

    def step(update: bool, traced: bool, folder: str) -> None:
        checker = GoldenChecker(GoldenStore(work / folder, work, update=update), NoHub(), work / "obtained")
        with torch.no_grad():
            if traced:
                with checker.trace(model):
                    out = model(x)
            else:
                out = model(x)
        checker.check(out, key="resnet18/logits")

    rows = []
    for phase, update in (("record", True), ("check (passing)", False)):
        def fresh(_name: str) -> None:
            if update:
                shutil.rmtree(work / "plain", ignore_errors=True)
                shutil.rmtree(work / "traced", ignore_errors=True)

        if not update:
            step(True, False, "plain")
            step(True, True, "traced")
        rows += interleave(f"golden {phase}, ResNet-18-sized model, {size}x{size}",
                           {"untraced": lambda: step(update, False, "plain"),
                            "golden.trace (calls kept)": lambda: step(update, True, "traced")},
                           rounds, baseline="untraced", before_each=fresh)
    record = work / "traced" / "resnet18" / "logits+calls.safetensors"
    rows[-1].extra["record_MiB"] = round(record.stat().st_size / (1 << 20), 1)
    return rows + record_stages(work, model, x, rounds)


def record_stages(work: Path, model, x, rounds: int) -> list[Row]:
    """Where a traced record's time goes, stage by stage, each against what it replaced: the forward pass under
    the capture (with the page faults it takes), writing the call record, and the hash itself."""
    import hashlib
    import resource
    import threading

    import torch
    from blake3 import blake3

    from reprohub.golden.calls import CallCapture, calls_record
    from reprohub.golden.streamed import write_parts

    def forward(capture: bool):
        def run() -> None:
            c = CallCapture(64 << 20, summarize=True) if capture else None
            hooks = c.attach(model) if c else []
            with torch.no_grad():
                model(x)
            if c:
                c.detach(hooks)
        return run

    contenders = {"forward pass": forward(False), "forward pass under the capture": forward(True)}
    rows = interleave("traced forward pass", contenders, rounds * 3, baseline="forward pass")
    for row, run in zip(rows, contenders.values()):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            run()
        row.extra["minor_page_faults"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5

    capture = CallCapture(64 << 20)
    hooks = capture.attach(model)
    with torch.no_grad():
        model(x)
    capture.detach(hooks)
    record = calls_record(capture, "bench")
    views = [memoryview(t.reshape(-1).view(torch.uint8).numpy()) for t in record.tensors.values()]
    size = sum(len(v) for v in views)

    def one_sha256_beside_the_writes() -> None:  # how records were written before (one digest of the file)
        hasher = hashlib.sha256()
        thread = threading.Thread(target=lambda: [hasher.update(v) for v in views])
        thread.start()
        with open(work / "whole.bin", "wb") as out:
            for view in views:
                out.write(view)
        thread.join()

    def clear(_name: str) -> None:
        for name in ("whole.bin", "parts.safetensors"):
            (work / name).unlink(missing_ok=True)

    rows += interleave(f"writing the call record ({size / (1 << 20):.1f} MiB)",
                       {"one sha256 beside the writes": one_sha256_beside_the_writes,
                        "write_parts (BLAKE3 parts, two threads)":
                            lambda: write_parts(work / "parts.safetensors", record.tensors, {}, durable=False)},
                       rounds * 3, size, baseline="one sha256 beside the writes", before_each=clear)
    rows += interleave(f"hashing the record's bytes in one thread ({size / (1 << 20):.1f} MiB)",
                       {"sha256": lambda: [hashlib.sha256(v).digest() for v in views],
                        "blake3": lambda: [blake3(v).digest() for v in views]},
                       rounds * 3, size, baseline="sha256")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=160, help="image side (default 160)")
    args = parser.parse_args(argv)
    return print_rows_in_temp("reprohub-traced-", lambda work: traced_cost(work, args.rounds, args.size))


if __name__ == "__main__":
    sys.exit(main())
