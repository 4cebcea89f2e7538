"""Golden outputs: flatten, store and compare nested tensor outputs; which golden file a check uses.

* :mod:`~reprohub.golden.engine` -- flatten, safetensors storage, dtype-aware comparison;
* :mod:`~reprohub.golden.values` -- how two tensors' values differ, and the report;
* :mod:`~reprohub.golden.store` -- golden files per key, CPU and CUDA, pinned in ``hub.lock``.

The names of the old flat module ``reprohub.golden`` are re-exported here.
"""

from .engine import (Comparison, Golden, LeafDiff, assert_matches, compare, default_tolerance, flatten,
                      load_golden, save_golden)
from .values import value_mismatch

__all__ = ["Comparison", "Golden", "LeafDiff", "assert_matches", "compare", "default_tolerance", "flatten",
           "load_golden", "save_golden", "value_mismatch"]
