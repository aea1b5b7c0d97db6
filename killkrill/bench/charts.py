"""One PNG per scenario: a panel per figure, a bar per contender (the median over the
rounds) with a whisker from the minimum to the maximum, the reference's bar darker.

Needs matplotlib (the ``bench`` extra: ``pip install -e '.[bench]'``); drawn off-screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from killkrill.bench.results import ScenarioResult

__all__ = ["write_charts"]

_PANELS = 3
"""Figures drawn per scenario (the first ones of its metrics)."""


def write_charts(results: Sequence[ScenarioResult], directory: Path) -> list[Path]:
    """Write ``<directory>/<scenario>.png`` for every scenario; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    for result in results:
        names = list(result.contenders)
        if not names:
            continue
        metrics = [m for m in result.metrics if any(result.values(n, m.key) for n in names)]
        metrics = metrics[:_PANELS]
        if not metrics:
            continue
        fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.6), squeeze=False)
        for ax, metric in zip(axes[0], metrics, strict=True):
            medians = [result.median(n, metric.key) or 0.0 for n in names]
            lows = [min(result.values(n, metric.key), default=0.0) for n in names]
            highs = [max(result.values(n, metric.key), default=0.0) for n in names]
            errors = [
                [m - lo for m, lo in zip(medians, lows, strict=True)],
                [hi - m for m, hi in zip(medians, highs, strict=True)],
            ]
            colours = ["#1f4e79" if n == result.reference else "#5b9bd5" for n in names]
            ax.bar(range(len(names)), medians, yerr=errors, capsize=4, color=colours)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
            ax.set_title(f"{metric.label}\n({metric.unit})" if metric.unit else metric.label,
                         fontsize=9)  # fmt: skip
            ax.tick_params(axis="y", labelsize=8)
            for x, value in enumerate(medians):
                ax.annotate(metric.show(value), (x, value), ha="center", va="bottom", fontsize=7)
        fig.suptitle(f"{result.key}: {result.title}", fontsize=10)
        fig.tight_layout()
        path = directory / f"{result.key}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
