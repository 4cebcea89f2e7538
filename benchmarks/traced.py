"""What attribution costs (issue 37): recording and checking a golden of a ResNet-18-sized model, traced (every
module call's inputs and outputs kept, :mod:`reprohub.golden.calls`) against untraced, in one run.

Each contender runs the forward pass and the golden step (record: write the golden, and the call record
when traced; check: compare, and copy the calls in memory when traced).  Targets: a traced record within 2x
the untraced one, a passing traced check within 1.2x.

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
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=160, help="image side (default 160)")
    args = parser.parse_args(argv)
    return print_rows_in_temp("reprohub-traced-", lambda work: traced_cost(work, args.rounds, args.size))


if __name__ == "__main__":
    sys.exit(main())
