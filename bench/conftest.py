"""pytest-benchmark suites: run with `make bench` or `pytest bench --benchmark-only`."""
