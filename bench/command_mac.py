"""What authenticating hub→edge messages costs, and what a forged big snapshot costs now.

Prints, for one process on this machine:

* the hub's extra work per decision: signing an ``AccessDecision`` (built the way
  the hub builds it, ``model_construct``) with the edge's key, in µs;
* the edge's extra work per command: verifying that MAC, in µs;
* a forged policy snapshot of ``--snapshot-mb`` MB (issue 12 measured 6.9 MB: 671 ms
  of tap-in and 121 MB on the edge): the time and memory the edge spends on it, with
  the contract's size bound (refused before parsing) and, for comparison, when parsed
  as before the bound (``model_validate_json`` on the same bytes).

    .venv/bin/python bench/command_mac.py [--n 20000] [--snapshot-mb 6.9]
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from protocol.errors import PayloadError
from protocol.messages import AccessDecision, PolicySnapshot, decode, encode
from protocol.signing import new_edge_key, sign, verify


def decision(i: int) -> AccessDecision:
    now = datetime.now(UTC)
    return AccessDecision.model_construct(
        v=2,
        mac="",
        req_id=f"req-{i}",
        machine="laser-1",
        granted=True,
        code="granted",
        message="C'est parti, Alice !",
        session_id=f"{i:032x}",
        ends_at=now + timedelta(hours=1),
        warn_at=(now + timedelta(minutes=50),),
        break_rule=None,
        break_at=None,
        staff=False,
        first_name="Alice",
        not_after=now + timedelta(seconds=10),
    )


def forged_snapshot(size_mb: float) -> bytes:
    entry = (
        '{"badge":"%064x","staff":true,"windows":[{"start":"2026-03-11T00:00:00Z",'
        '"end":"2030-01-01T00:00:00Z","machines":["laser-1"]}],"quota_min":{}}'
    )
    n = int(size_mb * 1e6 / (len(entry % 0) + 1))
    entries = ",".join(entry % i for i in range(n))
    head = (
        '{"v":1,"edge":"pi-a","version":9999999999,"issued_at":"2026-03-11T00:00:00Z",'
        '"valid_until":"2030-01-01T00:00:00Z","machines":[],"entries":['
    )
    return (head + entries + '],"signature":"' + "0" * 64 + '"}').encode()


def measure(fn: Callable[[], object]) -> tuple[float, float]:
    """(milliseconds of one call, peak MB allocated by another, traced)."""
    t = time.perf_counter()
    with contextlib.suppress(PayloadError):
        fn()
    ms = (time.perf_counter() - t) * 1000
    tracemalloc.start()
    with contextlib.suppress(PayloadError):
        fn()
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return ms, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000, help="decisions signed and verified")
    ap.add_argument("--snapshot-mb", type=float, default=6.9)
    a = ap.parse_args()

    key = new_edge_key()
    decisions = [decision(i) for i in range(a.n)]
    t = time.perf_counter()
    signed = [sign(d, key) for d in decisions]
    sign_us = (time.perf_counter() - t) / a.n * 1e6
    wire = [decode(AccessDecision, encode(s)) for s in signed]
    t = time.perf_counter()
    ok = sum(verify(w, key) for w in wire)
    verify_us = (time.perf_counter() - t) / a.n * 1e6
    assert ok == a.n
    print(f"sign one decision (hub)      : {sign_us:8.1f} µs  ({a.n} decisions)")
    print(f"verify one decision (edge)   : {verify_us:8.1f} µs")

    payload = forged_snapshot(a.snapshot_mb)
    print(f"forged snapshot              : {len(payload) / 1e6:8.1f} MB")
    ms, peak = measure(lambda: decode(PolicySnapshot, payload))
    print(f"  with the bound (refused)   : {ms:8.2f} ms, {peak:8.1f} MB allocated")
    ms, peak = measure(lambda: PolicySnapshot.model_validate_json(payload))
    print(f"  parsed as before the bound : {ms:8.2f} ms, {peak:8.1f} MB allocated")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS              : {rss:8.1f} MB")


if __name__ == "__main__":
    main()
