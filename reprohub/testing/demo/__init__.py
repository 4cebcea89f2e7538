"""Data for ``reprohub demo``: a tiny hub repo and a test project that locks it."""
