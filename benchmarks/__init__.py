"""Registry benchmarks: synthetic data loader, ITI-18 query and ITI-42 register load tests.

Run them all with ``python -m benchmarks`` (``--quick`` for a short run); see docs/performance.md.
"""
