"""A bounded dead-letter stream (issue 10, defect 9): never trimmed, the worker stops instead.

A real ``killkrill worker logs`` process with ``--max-dead-letters 5`` meets 10 poison
entries: 5 are dead-lettered, the other entries stay pending or unread (nothing lost, the
stream backs up), the worker is unready saying why, counts the overflow and logs an error.
After ``killkrill dlq purge`` it goes on by itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

from log_worker_helpers import DEAD_LETTER, REPO, STREAM, es_count, make_log, pending_count
from pending import QUICK_RECLAIM_ENV, QUICK_RECLAIM_MS
from polling import wait_for


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening yet
        return 0, ""


def test_a_full_dead_letter_stream_stops_the_worker_and_loses_nothing(
    redis_client, elasticsearch_client, start_worker, redis_url
):
    poison = [redis_client.xadd(STREAM, {"data": b"{poison %d" % i}).decode() for i in range(10)]
    for i in range(5):
        redis_client.xadd(STREAM, {"data": json.dumps(make_log(i))})
    worker = start_worker(
        "bounded",
        "--batch-size", "100",
        "--max-dead-letters", "5",
        "--claim-idle-ms", QUICK_RECLAIM_MS,
        env={**QUICK_RECLAIM_ENV, "KILLKRILL_RETRY__MAX_BACKOFF": "0.5"},
    )  # fmt: skip

    def unready() -> str:
        status, body = _get(worker.ops_port, "/readyz")
        return body if status == 503 and "is full" in body else ""

    body = wait_for(unready, 60, "the worker to report its full dead-letter stream")
    assert f"dead-letter stream {DEAD_LETTER} is full (5 of 5)" in body
    assert [f[b"source_id"].decode() for _, f in redis_client.xrange(DEAD_LETTER)] == poison[:5]
    assert redis_client.xlen(STREAM) == 10  # 5 poison + 5 good: all still there
    assert pending_count(redis_client) == 10
    assert es_count(elasticsearch_client) == 0

    # More arrives meanwhile: it waits on the stream (the backlog grows, nothing is lost).
    for i in range(5, 8):
        redis_client.xadd(STREAM, {"data": json.dumps(make_log(i))})
    assert unready()
    assert redis_client.xlen(STREAM) == 13
    status, metrics = _get(worker.ops_port, "/metrics")
    assert status == 200
    assert "killkrill_log_worker_dead_letter_refused_total 5.0" in metrics
    wait_for(
        lambda: (
            "killkrill_log_worker_dead_letter_entries 5.0" in _get(worker.ops_port, "/metrics")[1]
        ),
        30,
        "the dead-letter depth gauge to show 5",
    )
    errors = [
        line
        for line in worker.log_lines()
        if line.get("level") == "error" and "is full" in line.get("msg", "")
    ]
    assert errors and errors[0]["refused"] == 5

    purged = subprocess.run(
        [sys.executable, "-m", "killkrill", "dlq", "purge", "--all", "--yes",
         "--redis-url", redis_url],
        capture_output=True, text=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert purged.returncode == 0, purged.stderr
    assert f"deleted 5 dead letter(s) from {DEAD_LETTER}; 0 left" in purged.stdout

    # Room again: the worker reads on, reclaims what it left pending, dead-letters the other
    # 5 poison entries (exactly filling the bound) and indexes the 8 good ones.
    wait_for(
        lambda: redis_client.xlen(STREAM) == 0 and pending_count(redis_client) == 0,
        60,
        "the worker to drain the stream after the purge",
    )
    assert es_count(elasticsearch_client) == 8
    assert [f[b"source_id"].decode() for _, f in redis_client.xrange(DEAD_LETTER)] == poison[5:]
    wait_for(lambda: _get(worker.ops_port, "/readyz")[0] == 200, 30, "the worker to be ready")
