"""``killkrill bench``: start the bench's services, run the scenarios, write the results.

The scenarios run in a fixed order (e2e first: latency takes its offered load from it);
each module under :mod:`killkrill.bench.scenarios` has a ``run(ctx)`` returning its
:class:`~killkrill.bench.results.ScenarioResult` list. Results go to
``<results_dir>/<date>/results.json`` (and ``-quick`` for ``--quick``) with one PNG chart per
scenario, and the same directory is copied to ``<results_dir>/latest``.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from killkrill.bench import SCENARIOS
from killkrill.bench.context import BenchContext, Echo
from killkrill.bench.peers import ensure_tools, repo_root, syslog_ng, tool_versions
from killkrill.bench.results import ScenarioResult, render_table, write_results
from killkrill.bench.services import BenchServices
from killkrill.errors import KillKrillError

__all__ = ["SCENARIOS", "BenchOptions", "BenchRun", "prepare", "run_bench"]

_MODULES: dict[str, tuple[str, ...]] = {
    "e2e": ("e2e",),
    "latency": ("latency",),
    "http": ("http",),
    "log-worker": ("log_worker",),
    "doc-shape": ("doc_shape",),
    "metrics": ("metrics", "remote_write"),
    "scaling": ("scaling",),
}
"""Scenario name -> its modules under :mod:`killkrill.bench.scenarios`, run in order."""

_SERVICES: dict[str, tuple[str, ...]] = {
    "e2e": ("redis", "elasticsearch"),
    "latency": ("redis", "elasticsearch"),
    "http": ("redis",),
    "log-worker": ("redis", "elasticsearch"),
    "doc-shape": ("redis", "elasticsearch"),
    "metrics": ("redis", "postgres"),
    "scaling": ("redis", "elasticsearch"),
}
"""The bench's own services each scenario needs (only those are started)."""

_TOOLS: dict[str, tuple[str, ...]] = {
    "e2e": ("rsyslogd",),
    "latency": ("rsyslogd",),
    "http": ("wrk", "redis-benchmark"),
    "metrics": ("prometheus", "nginx"),
    "scaling": (),
}


@dataclass
class BenchOptions:
    scenarios: Sequence[str]
    quick: bool = False
    rounds: int | None = None
    contenders: Sequence[str] = ("killkrill", "rsyslog", "syslog-ng")
    results_dir: Path | None = None
    home: Path | None = None
    port_offset: int = 500
    keep_services: bool = False
    charts: bool = True


def prepare(scenarios: Sequence[str], echo: Echo) -> None:
    """Install what the scenarios drive (Debian packages, syslog-ng unpacked)."""
    tools = sorted({t for s in scenarios for t in _TOOLS.get(s, ())})
    if tools:
        for name, path in ensure_tools(*tools).items():
            echo(f"{name}: {path}")
    if {"e2e", "latency"} & set(scenarios):
        daemon = syslog_ng()
        echo(f"syslog-ng {daemon.version}: {daemon.binary}")


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=repo_root(), capture_output=True, text=True, check=False
        ).stdout.strip()
    except (OSError, KillKrillError):
        return ""


def machine(services: BenchServices) -> dict[str, Any]:
    """Where the figures come from (saved with them)."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
        "elasticsearch": services.elasticsearch_version() if services.elasticsearch_url else None,
        "redis": services.redis_version(),
        "tools": tool_versions(),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _run_part(ctx: BenchContext, part: str, failed: dict[str, str]) -> list[ScenarioResult]:
    """Run one scenario module; a failure is recorded (its traceback in the work directory's
    log) and the run goes on with the next one."""
    module = importlib.import_module(f"killkrill.bench.scenarios.{part}")
    runner: Callable[[BenchContext], list[ScenarioResult]] = module.run
    began = time.monotonic()
    try:
        produced = runner(ctx)
    except Exception as exc:
        failed[part] = f"{type(exc).__name__}: {exc}"
        with ctx.log(f"failed-{part}").open("a") as log:
            log.write(traceback.format_exc())
        ctx.echo(f"--- {part} FAILED: {failed[part]} (traceback: {ctx.log(f'failed-{part}')})")
        return []
    for result in produced:
        result.params["wall_s"] = round(time.monotonic() - began, 1)
        ctx.done[result.key] = result
    return produced


@dataclass(frozen=True)
class BenchRun:
    """What :func:`run_bench` wrote and the table it made."""

    results: Path
    table: str


def run_bench(options: BenchOptions, echo: Echo = print) -> BenchRun:
    """Run ``options.scenarios``; return the ``results.json`` written and the table."""
    unknown = [s for s in options.scenarios if s not in SCENARIOS]
    if unknown:
        raise KillKrillError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    if options.port_offset == 0:
        raise KillKrillError(
            "--port-offset 0 is the developer's own services: the bench flushes, truncates "
            "and pauses its services, so it runs a set of its own"
        )
    chosen = [s for s in SCENARIOS if s in options.scenarios]
    rounds = options.rounds or (1 if options.quick else 5)
    prepare(chosen, echo)
    services = BenchServices(
        options.home or Path("/tmp") / f"killkrill-bench-{os.getuid()}", options.port_offset
    )
    started = datetime.now(UTC)
    echo(services.up(sorted({name for s in chosen for name in _SERVICES[s]})))
    workdir = Path(tempfile.mkdtemp(prefix="kk-bench-", dir="/tmp"))
    workdir.chmod(0o755)
    ctx = BenchContext(
        services=services,
        workdir=workdir,
        run_id=started.strftime("%Y%m%d%H%M%S"),
        quick=options.quick,
        rounds=rounds,
        pause_rounds=max(1, min(rounds, 3)),
        echo=echo,
        contenders=tuple(options.contenders),
        warmup=not options.quick,
    )
    results: list[ScenarioResult] = []
    about: dict[str, Any] = {}
    failed: dict[str, str] = {}
    try:
        about["machine"] = machine(services)
        if services.elasticsearch_url:
            ctx.put_peer_template()
        for name in chosen:
            echo(f"--- {name}: {SCENARIOS[name]}")
            for part in _MODULES[name]:
                produced = _run_part(ctx, part, failed)
                results.extend(produced)
    except BaseException:
        echo(f"bench interrupted; the processes' logs are in {workdir}")
        raise
    finally:
        try:
            if services.elasticsearch_url:
                ctx.cleanup_elasticsearch()
            ctx.flush_redis()
        finally:
            if options.keep_services:
                echo(f"services left running (KILLKRILL_DEV_HOME={services.home} "
                     f"KILLKRILL_DEV_PORT_OFFSET={services.port_offset})")  # fmt: skip
            else:
                services.down()
    finished = datetime.now(UTC)
    out_root = options.results_dir or repo_root() / "bench" / "results"
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ") + ("-quick" if options.quick else "")
    directory = out_root / stamp
    document = {
        "quick": options.quick,
        "rounds": rounds,
        "pause_rounds": ctx.pause_rounds,
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "command": " ".join(
            ["killkrill bench", *chosen]
            + (["--quick"] if options.quick else [])
            + ([f"--rounds {options.rounds}"] if options.rounds else [])
        ),
        "failed": failed,
        **about,
    }
    path = write_results(document, results, directory, out_root / "latest")
    if options.charts and results:
        from killkrill.bench.charts import write_charts

        for chart in write_charts(results, directory):
            echo(f"chart: {chart}")
        shutil.rmtree(out_root / "latest", ignore_errors=True)
        shutil.copytree(directory, out_root / "latest")
    echo(f"results: {path} (and {out_root / 'latest' / 'results.json'})")
    if failed:
        raise KillKrillError(
            f"scenario(s) failed: {', '.join(failed)}; the processes' logs are in {workdir}\n"
            + render_table(results)
        )
    shutil.rmtree(workdir, ignore_errors=True)
    return BenchRun(path, render_table(results))
