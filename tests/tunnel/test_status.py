"""The live view renders connections, paths and refusals (rich, no terminal needed)."""

from __future__ import annotations

from rich.console import Console

from mptcpsec.tunnel.status import StatusView


def test_live_table_and_plain_log(capsys) -> None:  # type: ignore[no-untyped-def]
    rows = [{"number": 1, "source": "laptop", "destination": "192.0.2.7:443",
             "state": "relaying", "out": 1200, "back": 3_400_000,
             "paths": "0:established 1.2 kB  1:poisoned 10 kB"}]
    view = StatusView("mptcpsec gateway", lambda: rows,
                      lambda: "1 accepted, 1 subflows poisoned; refused: not allowed: 2",
                      live=False)
    console = Console(record=True, width=160)
    console.print(view._table())
    text = console.export_text()
    assert "192.0.2.7:443" in text and "3.4 MB" in text and "1:poisoned" in text
    assert "refused: not allowed: 2" in text
    view.log("refused 198.51.100.1:22")
    assert "refused 198.51.100.1:22" in capsys.readouterr().err
    StatusView("x", lambda: [], lambda: "", quiet=True).log("nothing")
    assert capsys.readouterr().err == ""
