"""``killkrill status``: is data flowing, and if not, where is it stuck?

Reads each pipeline's facts from Redis and its sinks (:mod:`killkrill.health`) and shows,
per pipeline, its verdict and reason and a table of its streams: length, lag, pending,
oldest pending age, dead letters, consumers and the last time a worker of that stream
wrote to its sink; then its workers and sinks. ``--json`` prints the same as one JSON
document (``{"pipelines": [...]}``). The exit code is 0 when every pipeline is
``Healthy``, 1 otherwise, so scripts and probes can use it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from killkrill.cli.options import pipeline_file, secrets_dir

if TYPE_CHECKING:
    from killkrill.health import PipelineHealth

__all__ = ["status"]


@click.command()
@pipeline_file(
    multiple=True, help="A Pipeline document (repeat for several). Default: the default pipeline."
)
@secrets_dir
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of tables.")
@click.option("--watch", is_flag=True, help="Show again every --interval seconds until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between --watch reads.")
@click.option("--lag-threshold", type=int, help="Lag (entries) that is Backlogged [10000].")
@click.option("--stalled-seconds", type=float, help="Wait with no delivery that is Stalled [60].")
@click.option("--no-data-seconds", type=float, help="No entry for this long is NoData [off].")
def status(
    files: tuple[Path, ...],
    secrets_dir: Path,
    as_json: bool,
    watch: bool,
    interval: float,
    lag_threshold: int | None,
    stalled_seconds: float | None,
    no_data_seconds: float | None,
) -> None:
    """Each pipeline's data-plane health: verdict, reason, streams, workers, sinks.

    Uses REDIS_URL, ELASTICSEARCH_URL and DATABASE_URL (e.g. from `killkrill dev services
    env`) over the URLs of the Pipeline documents, as the processes do."""
    from killkrill.config.pipeline import Pipeline, component_settings, load_pipeline
    from killkrill.health import HealthTarget, Thresholds, check

    pipelines = [load_pipeline(f) for f in files] or [Pipeline()]
    targets = [
        HealthTarget.from_settings(
            component_settings(p, secrets_dir=secrets_dir.resolve()).for_this_process()
        )
        for p in pipelines
    ]
    defaults = Thresholds()
    thresholds = dataclasses.replace(
        defaults,
        lag_entries=lag_threshold if lag_threshold is not None else defaults.lag_entries,
        stalled_seconds=stalled_seconds or defaults.stalled_seconds,
        no_data_seconds=no_data_seconds,
    )

    async def read_all() -> list[PipelineHealth]:
        return list(await asyncio.gather(*(check(t, thresholds) for t in targets)))

    while True:
        reports = asyncio.run(read_all())
        if as_json:
            doc = {"pipelines": [r.as_dict() for r in reports]}
            click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        else:
            if watch:
                click.clear()
            _show(reports)
        healthy = all(r.healthy for r in reports)
        if not watch:
            sys.exit(0 if healthy else 1)
        try:
            time.sleep(interval)
        except KeyboardInterrupt:
            sys.exit(0 if healthy else 1)


def _ago(now: float, then: float | None) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, now - then)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _age(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def _show(reports: list[PipelineHealth]) -> None:
    from rich.console import Console
    from rich.table import Table

    # A terminal's own width; piped (a script, a probe) wide enough for the stream keys.
    console = Console(width=None if sys.stdout.isatty() else 200)
    for report in reports:
        colour = "green" if report.healthy else "red"
        console.print(
            f"[bold]pipeline {report.name}[/bold]: [{colour}]{report.verdict}[/{colour}] - "
            f"{report.reason}",
            highlight=False,
        )
        table = Table(show_edge=False, pad_edge=False)
        for column in (
            "stream",
            "length",
            "lag",
            "pending",
            "oldest pending",
            "DLQ",
            "consumers",
            "last sink success",
        ):
            table.add_column(column, justify="left" if column == "stream" else "right")
        for facts in report.streams:
            kind_workers = [w for w in report.workers if facts.name in w.streams]
            last = max((w.last_success_at for w in kind_workers if w.last_success_at), default=None)
            table.add_row(
                facts.name,
                str(facts.length),
                str(facts.lag),
                str(facts.pending),
                _age(facts.oldest_pending_seconds),
                str(facts.dead_letters),
                str(len(facts.consumers)),
                _ago(report.checked_at, last),
            )
        console.print(table)
        for w in report.workers:
            error = f", last error {_ago(report.checked_at, w.last_error_at)}: {w.last_error}"
            console.print(
                f"  worker {w.kind} {w.consumer}: {w.delivered} delivered, "
                f"{w.dead_lettered} dead-lettered, last success "
                f"{_ago(report.checked_at, w.last_success_at)}" + (error if w.last_error else ""),
                highlight=False,
            )
        if not report.workers:
            console.print("  no live worker", highlight=False)
        for sink in report.sinks:
            console.print(f"  sink {sink.name}: {sink.state} ({sink.detail})", highlight=False)
