"""``killkrill dlq list|replay|purge``: the real command (a subprocess) against real Redis.

Filters (by reason, substring or regex; by dead-letter ID range), ``replay --dry-run``,
``purge`` and its safeguards, ``replay --rate`` and the receivers' backlog limit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis
from killkrill_command import REPO, killkrill

SOURCE = "logs-stream"
DLQ = "logs-stream:dead-letter"


def _letters(client: redis.Redis, *reasons: str) -> list[str]:
    """One dead letter per reason, as a worker writes them; returns their IDs."""
    ids = []
    for n, reason in enumerate(reasons):
        source_id = f"{1_700_000_000_000 + n}-0"
        fields = {
            "data": json.dumps({"n": n}),
            "v": "1",
            "reason": reason,
            "source_stream": SOURCE,
            "source_id": source_id,
            "group": "log-worker",
            "attempts": "1",
            "failed_at": "1700000000.0",
            "worker": "log-worker/test",
        }
        ids.append(client.xadd(DLQ, fields).decode())
    return ids


def _listed(out: subprocess.CompletedProcess[str]) -> list[int]:
    assert out.returncode == 0, out.stderr
    return [json.loads(json.loads(line)["data"])["n"] for line in out.stdout.splitlines()]


REASONS = (
    "not valid JSON: unexpected character",
    "elasticsearch 400 mapper_parsing_exception: failed to parse field [duration]",
    "delivered 11 times without success (max_deliveries=10)",
    "elasticsearch 400 Mapper_Parsing_Exception: failed to parse field [latency]",
)


def test_list_filters_by_reason_and_id_range(redis_client, redis_url):
    ids = _letters(redis_client, *REASONS)
    assert _listed(killkrill(redis_url, "dlq", "list", "--json")) == [0, 1, 2, 3]
    by_text = killkrill(redis_url, "dlq", "list", "--json", "--reason", "MAPPER_parsing")
    assert _listed(by_text) == [1, 3]  # case-insensitive substring
    by_regex = killkrill(redis_url, "dlq", "list", "--json", "--reason-regex", r"field \[lat")
    assert _listed(by_regex) == [3]
    in_range = killkrill(redis_url, "dlq", "list", "--json", "--from", ids[1], "--to", ids[2])
    assert _listed(in_range) == [1, 2]
    both = killkrill(redis_url, "dlq", "list", "--json", "--from", ids[2], "--reason", "mapper")
    assert _listed(both) == [3]
    assert _listed(killkrill(redis_url, "dlq", "list", "--json", "--id", ids[0])) == [0]
    text = killkrill(redis_url, "dlq", "list", "--reason", "max_deliveries")
    assert "1 of 4 dead letter(s) in logs-stream:dead-letter" in text.stderr
    bad = killkrill(redis_url, "dlq", "list", "--reason-regex", "([")
    assert bad.returncode == 2
    assert "--reason-regex" in bad.stderr
    bad = killkrill(redis_url, "dlq", "list", "--from", "yesterday")
    assert bad.returncode == 2
    assert "--from" in bad.stderr


def test_replay_dry_run_lists_and_changes_nothing_then_a_filtered_replay(redis_client, redis_url):
    _letters(redis_client, *REASONS)
    dry = killkrill(redis_url, "dlq", "replay", "--dry-run", "--reason", "mapper_parsing")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 2 dead letter(s) from logs-stream:dead-letter; nothing changed" in (
        dry.stdout
    )
    assert dry.stdout.count("reason: elasticsearch 400") == 2
    assert (redis_client.xlen(DLQ), redis_client.exists(SOURCE)) == (4, 0)

    out = killkrill(redis_url, "dlq", "replay", "--reason", "mapper_parsing")
    assert out.returncode == 0, out.stderr
    assert "replayed 2 dead letter(s) from logs-stream:dead-letter; 2 left" in out.stdout
    replayed = [json.loads(f[b"data"])["n"] for _, f in redis_client.xrange(SOURCE)]
    assert replayed == [1, 3]
    left = killkrill(redis_url, "dlq", "list", "--json")
    assert _listed(left) == [0, 2]


def test_purge_needs_a_filter_or_all_and_deletes_only_with_yes(redis_client, redis_url):
    _letters(redis_client, *REASONS)
    nothing = killkrill(redis_url, "dlq", "purge")
    assert nothing.returncode == 2
    assert "purge needs a filter" in nothing.stderr
    preview = killkrill(redis_url, "dlq", "purge", "--reason", "not valid json")
    assert preview.returncode == 1
    assert "nothing deleted: add --yes to delete these 1 dead letter(s)" in preview.stderr
    assert "reason: not valid JSON" in preview.stdout
    dry = killkrill(redis_url, "dlq", "purge", "--all", "--dry-run")
    assert dry.returncode == 0
    assert "would delete 4 dead letter(s)" in dry.stdout
    assert redis_client.xlen(DLQ) == 4

    one = killkrill(redis_url, "dlq", "purge", "--reason", "not valid json", "--yes")
    assert one.returncode == 0, one.stderr
    assert "deleted 1 dead letter(s) from logs-stream:dead-letter; 3 left" in one.stdout
    assert _listed(killkrill(redis_url, "dlq", "list", "--json")) == [1, 2, 3]
    everything = killkrill(redis_url, "dlq", "purge", "--all", "--yes")
    assert "deleted 3 dead letter(s) from logs-stream:dead-letter; 0 left" in everything.stdout
    assert redis_client.xlen(DLQ) == 0
    assert redis_client.exists(SOURCE) == 0  # purge never replays


def test_replay_rate_limits_letters_per_second(redis_client, redis_url):
    _letters(redis_client, *(f"reason {i}" for i in range(20)))
    started = time.monotonic()
    out = killkrill(redis_url, "dlq", "replay", "--all", "--rate", "10")
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert "replayed 20 dead letter(s)" in out.stdout
    assert redis_client.xlen(SOURCE) == 20
    assert elapsed >= 1.9  # the 20th letter is due 1.9 s after the first, at 10 a second


def test_replay_stops_at_the_receivers_backlog_limit(redis_client, redis_url, tmp_path):
    """The limit comes from the receivers' settings (here a config file); the source stream
    is never pushed past it, and a replay that cannot wait stops saying so."""
    for i in range(4):
        redis_client.xadd(SOURCE, {"data": json.dumps({"waiting": i})})
    _letters(redis_client, "a", "b", "c")
    config = tmp_path / "killkrill.yaml"
    config.write_text("receivers:\n  backpressure:\n    max_backlog: 5\n")
    out = killkrill(
        redis_url, "dlq", "replay", "--all", "--config", str(config), "--backlog-wait", "0"
    )
    assert out.returncode == 1
    assert "replayed 1 dead letter(s) from logs-stream:dead-letter; 2 left" in out.stderr
    assert "holds 5 entries, at the receivers' backlog limit (5)" in out.stderr
    assert (redis_client.xlen(SOURCE), redis_client.xlen(DLQ)) == (5, 2)


def test_replay_waits_for_the_backlog_to_drain(redis_client, redis_url):
    waiting = [redis_client.xadd(SOURCE, {"data": b"{}"}) for _ in range(3)]
    _letters(redis_client, "a", "b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "killkrill", "dlq", "replay", "--all", "--max-backlog", "3",
         "--backlog-wait", "60", "--redis-url", redis_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # printed once the replay waits
        assert "logs-stream holds 3 entries (backlog limit 3): waiting up to 60s" in line
        assert (redis_client.xlen(SOURCE), redis_client.xlen(DLQ)) == (3, 2)
        redis_client.xdel(SOURCE, *waiting)  # the workers catch up
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, stderr
    assert "replayed 2 dead letter(s) from logs-stream:dead-letter; 0 left" in stdout
    assert (redis_client.xlen(SOURCE), redis_client.xlen(DLQ)) == (2, 0)


@pytest.mark.parametrize("command", ["list", "replay", "purge"])
def test_every_command_refuses_a_malformed_id(redis_client, redis_url, command):
    out = killkrill(redis_url, "dlq", command, "--id", "nope")
    assert out.returncode == 2
    assert "not a stream entry ID" in out.stderr
