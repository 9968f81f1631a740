"""Benchmarks of pubsubd against Prosody; run with ``python -m bench.run``."""
