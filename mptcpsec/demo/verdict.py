"""What a scenario result means, in words: the verdict and the ``--compare`` table rows."""

from __future__ import annotations

from ..lab.scenarios import ScenarioResult


def headline(res: ScenarioResult) -> str:
    """INTACT / CORRUPTED / ABORTED / STALLED."""
    if res.outcome == "completed":
        return "INTACT" if res.intact else "CORRUPTED"
    return res.outcome.upper()


def explanation(res: ScenarioResult) -> str:
    """One or two sentences on what happened and why."""
    path = f"path {res.attack_path}" if res.attack_path else "the attacked path"
    poisoned = [e for e in res.events if e["event"] == "subflow_poisoned"
                and not e["reported_by_peer"]]
    fired = bool(res.strikes)
    if res.attack and not fired:
        return (f"The attack on {path} never fired (too little data crossed it): nothing to "
                "show. Try a larger --bytes or a smaller --attack-after.")
    if res.outcome == "completed" and res.intact:
        if poisoned:
            e = poisoned[0]
            return (f"The tampered record on {path} failed {e['reason']} at the "
                    f"{e['side']}; subflow {e['subflow_id']} was dropped, the peer was told "
                    "over a clean subflow, and its unacknowledged data was re-sent on the "
                    "other path(s). Not one forged byte was delivered.")
        if res.strikes and res.mode == "mptcpsec":
            return (f"The attack broke {path} as a path failure (no forgery to detect); its "
                    "data was re-sent on the other path(s).")
        if res.strikes:
            return (f"The attack on {path} did not change what was delivered (the "
                    f"{res.mode} receiver discarded the record), but nothing noticed it.")
        return "No attack: the echo came back byte for byte."
    if res.outcome == "completed":
        where = (f" (first corrupted byte at offset {res.first_difference:,})"
                 if res.first_difference is not None else "")
        return (f"{res.mode} delivered the attacker's modification to the application as if "
                f"it were data{where}, and nobody noticed: the SHA-256s differ.")
    if res.outcome == "aborted":
        cause = res.server_error or res.error or "unknown"
        if res.mode == "tls-over-plain":
            return ("TLS over the multipath stream noticed the tampering, but TLS can only "
                    f"kill the whole connection: {res.bytes_echoed:,} of {res.bytes_sent:,} "
                    f"bytes came back. ({cause})")
        return f"The connection failed: {cause}"
    return f"The transfer stalled: {res.error}"


def detected(res: ScenarioResult) -> bool:
    """Whether anything noticed the attack: a poisoned subflow, or (tls-over-plain) the TLS
    session dying of it. The table and the JSON both use this."""
    return res.detected or (res.mode == "tls-over-plain" and res.outcome == "aborted"
                            and bool(res.strikes))


def to_json(res: ScenarioResult) -> dict[str, object]:
    """The result as `demo --json` prints it: one clock (seconds from the start of the run,
    as the events' "t") for strikes too, records counted from 1 as the receiver counts,
    `detected` as in the table, and whether the attack fired at all."""
    doc = res.to_dict()
    doc["detected"] = detected(res)
    doc["attack_fired"] = bool(res.strikes) if res.attack else None
    for s in doc["strikes"]:  # already on the events' clock (lab.scenarios)
        s.setdefault("record_number", int(s["record_index"]) + 1)
    return doc


def table_row(res: ScenarioResult) -> dict[str, str]:
    """One row of the ``--compare`` table."""
    if res.attack and not res.strikes:
        reaction = "(the attack never fired)"
    elif res.mode == "mptcpsec":
        reaction = "poisoned subflow dropped" if res.detected else (
            "path dropped" if res.strikes else "-")
    elif res.mode == "tls-over-plain":
        reaction = "connection aborted" if res.outcome == "aborted" else "none"
    else:
        reaction = "none" if res.strikes else "-"
    return {
        "mode": res.mode,
        "detected": "yes" if detected(res) else "no",
        "reaction": reaction,
        "echoed": f"{res.bytes_echoed / 1e6:.1f} of {res.bytes_sent / 1e6:.1f} MB",
        "data": headline(res),
    }
