"""What a bench run measured: per scenario, per contender, one dict of figures per round.

Pure: no I/O but :func:`write_results`. A scenario's figures are kept per round; the
summary (median, min, max over the rounds, and the ratio of each contender's median to the
reference contender's on the scenario's primary figure) is derived, never stored apart.

``results.json`` (``version`` 1)::

    {"version": 1, "quick": false, "rounds": 5, "started": ..., "finished": ...,
     "machine": {...},
     "scenarios": {
       "e2e": {"title": ..., "reference": "rsyslog", "primary": "msgs_per_s",
               "params": {...}, "notes": [...],
               "metrics": {"msgs_per_s": {"label": ..., "unit": ..., "better": "higher"}, ...},
               "contenders": {
                 "killkrill": {"msgs_per_s": 17000.0, ...,     # medians over the rounds
                               "ratio": 0.38,                  # primary median / reference's
                               "stats": {"msgs_per_s": {"median": .., "min": .., "max": ..}},
                               "rounds": [{"msgs_per_s": .., ...}, ...]}}}}}
"""

from __future__ import annotations

import json
import shutil
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["RESULTS_VERSION", "Metric", "ScenarioResult", "render_table", "write_results"]

RESULTS_VERSION = 1


@dataclass(frozen=True)
class Metric:
    """One figure a scenario reports for each contender."""

    key: str
    """Key in ``results.json`` (``msgs_per_s``)."""
    label: str
    """Column heading in the table."""
    unit: str = ""
    better: Literal["higher", "lower", "none"] = "higher"
    digits: int = 0
    """Decimals shown in the table."""

    def show(self, value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value:,.{self.digits}f}"


@dataclass
class ScenarioResult:
    """The rounds of one scenario: ``contenders[name]`` holds one dict per round."""

    key: str
    title: str
    reference: str
    """Contender every other is compared with (the ratio column)."""
    metrics: Sequence[Metric]
    """The figures shown; the first is the primary one (the ratio is taken on it)."""
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    contenders: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    @property
    def primary(self) -> Metric:
        return self.metrics[0]

    def add(self, contender: str, figures: dict[str, float]) -> None:
        """Record one round of ``contender``."""
        self.contenders.setdefault(contender, []).append(figures)

    def values(self, contender: str, key: str) -> list[float]:
        return [r[key] for r in self.contenders.get(contender, []) if r.get(key) is not None]

    def median(self, contender: str, key: str) -> float | None:
        values = self.values(contender, key)
        return float(statistics.median(values)) if values else None

    def ratio(self, contender: str) -> float | None:
        """Median of the primary figure over the reference's (None without both)."""
        mine = self.median(contender, self.primary.key)
        ref = self.median(self.reference, self.primary.key)
        if mine is None or not ref:
            return None
        return mine / ref

    def summary(self) -> dict[str, Any]:
        """The scenario as it goes into ``results.json``."""
        contenders: dict[str, Any] = {}
        for name, rounds in self.contenders.items():
            keys = sorted({k for r in rounds for k in r})
            entry: dict[str, Any] = {k: self.median(name, k) for k in keys}
            entry["ratio"] = self.ratio(name)
            entry["stats"] = {
                k: {"median": self.median(name, k), "min": min(v), "max": max(v)}
                for k in keys
                if (v := self.values(name, k))
            }
            entry["rounds"] = rounds
            contenders[name] = entry
        return {
            "title": self.title,
            "reference": self.reference,
            "primary": self.primary.key,
            "params": self.params,
            "notes": self.notes,
            "metrics": {
                m.key: {"label": m.label, "unit": m.unit, "better": m.better} for m in self.metrics
            },
            "contenders": contenders,
        }


def render_table(results: Iterable[ScenarioResult]) -> str:
    """One block per scenario: the primary figure's median, min, max and ratio to the
    reference, then the medians of the other figures."""
    blocks: list[str] = []
    for result in results:
        primary, others = result.primary, list(result.metrics[1:])
        head = [
            "contender",
            f"{primary.label} median",
            "min",
            "max",
            f"ratio to {result.reference}",
            *(m.label for m in others),
        ]
        rows = [head]
        for name in result.contenders:
            values = result.values(name, primary.key)
            ratio = result.ratio(name)
            rows.append(
                [
                    name,
                    primary.show(result.median(name, primary.key)),
                    primary.show(min(values)) if values else "-",
                    primary.show(max(values)) if values else "-",
                    f"{ratio:.2f}" if ratio is not None else "-",
                    *(m.show(result.median(name, m.key)) for m in others),
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
        lines = [f"== {result.key}: {result.title}"]
        for n, row in enumerate(rows):
            cells = [
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
                for i, cell in enumerate(row)
            ]
            lines.append("  ".join(cells).rstrip())
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
        units = ", ".join(f"{m.label}: {m.unit}" for m in result.metrics if m.unit)
        if units:
            lines.append(f"   ({units})")
        lines.extend(f"   note: {note}" for note in result.notes)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def write_results(
    document: dict[str, Any], results: Sequence[ScenarioResult], directory: Path, latest: Path
) -> Path:
    """Write ``results.json`` into ``directory`` and copy that directory to ``latest``
    (replaced). ``document`` holds everything but the scenarios. Returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    body = {
        "version": RESULTS_VERSION,
        **document,
        "scenarios": {r.key: r.summary() for r in results},
    }
    path = directory / "results.json"
    path.write_text(json.dumps(body, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    if latest.resolve() != directory.resolve():
        shutil.rmtree(latest, ignore_errors=True)
        shutil.copytree(directory, latest)
    return path
