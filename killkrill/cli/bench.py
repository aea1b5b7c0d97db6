"""``killkrill bench``: the benchmark harness (see :mod:`killkrill.bench`)."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from killkrill.bench import SCENARIOS

__all__ = ["bench"]

_CONTENDERS = ("killkrill", "rsyslog", "syslog-ng")


@click.command()
@click.argument("scenarios", nargs=-1, type=click.Choice(list(SCENARIOS)), metavar="[SCENARIO]...")
@click.option("--quick", is_flag=True, help="Tiny sizes, 1 round, no warm-up: checks it works.")
@click.option("--rounds", type=click.IntRange(min=1), help="Rounds per scenario (default 5).")
@click.option(
    "--contender",
    "contenders",
    multiple=True,
    type=click.Choice(_CONTENDERS),
    help="Syslog contenders of e2e and latency (repeatable; default all three).",
)
@click.option(
    "--results-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where <date>/ and latest/ go (default bench/results of the checkout).",
)
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="State directory of the bench's own services (default /tmp/killkrill-bench-<uid>).",
)
@click.option(
    "--port-offset",
    default=500,
    show_default=True,
    type=click.IntRange(min=1),
    help="Port shift of the bench's own Redis/PostgreSQL/Elasticsearch.",
)
@click.option(
    "--keep-services",
    is_flag=True,
    help="Leave the bench's services running for the next run (they start in ~20-60 s).",
)
@click.option("--no-charts", is_flag=True, help="Skip the PNG charts (no matplotlib needed).")
@click.option("--prepare", is_flag=True, help="Only install the peers and tools, then exit.")
def bench(
    scenarios: tuple[str, ...],
    quick: bool,
    rounds: int | None,
    contenders: tuple[str, ...],
    results_dir: Path | None,
    home: Path | None,
    port_offset: int,
    keep_services: bool,
    no_charts: bool,
    prepare: bool,
) -> None:
    """Run the benchmark SCENARIOs (default: all) against their references, in rounds.

    Starts its own Redis, PostgreSQL and Elasticsearch (never the developer's: it flushes,
    truncates and pauses them), installs the peers it compares with (rsyslog, syslog-ng,
    Prometheus, wrk...), prints a table and writes bench/results/<date>/results.json, the
    same in bench/results/latest/, and PNG charts. bench/README.md explains each scenario.
    """
    from killkrill.bench.runner import BenchOptions, run_bench
    from killkrill.bench.runner import prepare as install

    chosen = scenarios or tuple(SCENARIOS)

    def echo(line: str) -> None:
        click.echo(line, err=True)

    if prepare:
        install(chosen, echo)
        return
    # SIGTERM ends a run as Ctrl-C does: contenders stopped, Elasticsearch resumed, the
    # services it started stopped (the default action would leave all of them behind).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    done = run_bench(
        BenchOptions(
            scenarios=chosen,
            quick=quick,
            rounds=rounds,
            contenders=contenders or _CONTENDERS,
            results_dir=results_dir,
            home=home,
            port_offset=port_offset,
            keep_services=keep_services,
            charts=not no_charts,
        ),
        echo,
    )
    click.echo(done.table)
