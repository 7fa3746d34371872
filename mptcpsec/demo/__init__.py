"""What ``mptcpsec demo`` shows: a live view of a scenario, the verdict, a comparison table,
JSON and a throughput plot. The scenario itself runs in ``mptcpsec.lab.scenarios``."""

from .live import LiveView, PlainLines
from .verdict import explanation, headline, table_row

__all__ = ["LiveView", "PlainLines", "explanation", "headline", "table_row"]
