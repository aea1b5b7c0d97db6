"""Redis's CPU per record of the stream buffer, by AOF setting, including its AOF rewrites.

    python bench/redis/bench_aof.py [--records 300000] [--backlog 60000]

Starts its own ``redis-server`` (Debian: redis-server) on a free loopback port for each
setting, with a fresh data directory, and runs the log path's Redis commands on it as the
receiver and the log worker send them: the receiver's append script (batches of 500), the
worker's XREADGROUP (500) and XACK + XDEL in one MULTI. A backlog of ``--backlog`` records
is appended first and kept: each AOF rewrite copies it. The figure is the CPU seconds of
the server and its rewrite children per 100,000 records, from /proc.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from killkrill.dev.process import free_port
from killkrill.streams.append import _SCRIPT

SETTINGS = {
    "AOF, rewrite from 64mb (Redis's default)": ["--appendonly", "yes"],
    "AOF, rewrite from 1gb (the dev and kind Redis)": [
        "--appendonly", "yes", "--auto-aof-rewrite-min-size", "1gb",
    ],
    "no AOF (loses the buffer on a restart)": ["--appendonly", "no"],
}  # fmt: skip
BATCH = 500
PAYLOAD = b'{"message":"' + b"a" * 1080 + b'"}'


def _cpu(pid: int) -> float:
    """utime + stime of ``pid`` and its waited-for children (the AOF rewrites), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def measure(flags: list[str], records: int, backlog: int) -> tuple[float, int]:
    """(CPU-s per 100k records, AOF rewrites) for one server started with ``flags``."""
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="kk-bench-aof-"))
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
         "--save", "", "--appendfsync", "everysec", *flags],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.xgroup_create("s", "g", id="0", mkstream=True)
        sha = client.script_load(_SCRIPT)
        for _ in range(backlog // BATCH):
            client.evalsha(sha, 1, "s", -1, BATCH, "1", *([PAYLOAD] * BATCH))
        before = _cpu(server.pid)
        for _ in range(records // BATCH):
            client.evalsha(sha, 1, "s", -1, BATCH, "1", *([PAYLOAD] * BATCH))
            [(_, entries)] = client.xreadgroup("g", "c", {"s": ">"}, count=BATCH)
            ids = [entry_id for entry_id, _ in entries]
            with client.pipeline(transaction=True) as pipe:
                pipe.xack("s", "g", *ids).xdel("s", *ids).execute()
        spent = _cpu(server.pid) - before
        rewrites = int(client.info("persistence")["aof_rewrites"])
        client.close()
        return spent * 100_000 / records, rewrites
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(data, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--backlog", type=int, default=60_000)
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    print(f"{args.records:,} records through a backlog of {args.backlog:,}, {len(PAYLOAD)} B each")
    for name, flags in SETTINGS.items():
        cpu, rewrites = measure(flags, args.records, args.backlog)
        print(f"  {name}: {cpu:.2f} CPU-s/100k, {rewrites} AOF rewrites")


if __name__ == "__main__":
    main()
