"""One golden comparison in a fresh process: prints seconds and peak extra memory (MiB).

The output and its golden differ by noise well inside float32 tolerances, as
outputs recomputed on another machine do; memory is the growth of the peak RSS
during the comparison, beyond the two tensors themselves.
"""

import resource
import sys
import time

import torch

from reprohub.golden.engine import Golden, compare

contender, size_mib = sys.argv[1], int(sys.argv[2])
n = size_mib * (1 << 20) // 4
expected = torch.randn(n, generator=torch.Generator().manual_seed(0))
actual = expected.clone()
actual[::1000] += 1e-7
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
if contender == "reprohub compare":
    assert compare(actual, Golden({"out": expected}, {})).ok
else:
    torch.testing.assert_close(actual, expected)
seconds = time.perf_counter() - start
extra_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
print(seconds, extra_mib)
