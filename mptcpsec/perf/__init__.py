"""Measurement code shared by `mptcpsec bench` and the pytest-benchmark suites in bench/."""
