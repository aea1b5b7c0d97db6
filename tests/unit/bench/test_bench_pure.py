"""The bench's pure parts: results and their summary, the load's framing, latencies,
percentiles, Prometheus exposition parsing, config rendering, round rotation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from killkrill.bench.context import rotate
from killkrill.bench.loadgen import Searchable, SendResult, latencies, syslog_stream
from killkrill.bench.peers import peers_dir, render
from killkrill.bench.proctree import TreeMeter, descendants, read_proc
from killkrill.bench.results import Metric, ScenarioResult, render_table, write_results
from killkrill.bench.scenarios.doc_shape import SHAPES, shape_documents
from killkrill.bench.scenarios.latency import percentile
from killkrill.bench.scenarios.remote_write import SyntheticExporter, parse_exposition
from killkrill.errors import DevServiceError
from killkrill.receivers.syslog_framing import FrameSplitter
from killkrill.receivers.syslog_parser import parse_syslog

METRICS = (Metric("rate", "rate", "1/s"), Metric("cpu", "cpu", "s", "lower", 2))


def _result() -> ScenarioResult:
    result = ScenarioResult("e2e", "title", "ref", METRICS, params={"n": 3})
    for rate, cpu in ((10.0, 1.0), (30.0, 3.0), (20.0, 2.0)):
        result.add("ref", {"rate": rate, "cpu": cpu})
    for rate in (5.0, 15.0, 10.0):
        result.add("mine", {"rate": rate, "cpu": 4.0})
    return result


def test_summary_gives_medians_extremes_and_the_ratio_to_the_reference() -> None:
    summary = _result().summary()
    assert summary["reference"] == "ref" and summary["primary"] == "rate"
    mine = summary["contenders"]["mine"]
    assert mine["rate"] == 10.0 and mine["cpu"] == 4.0
    assert mine["stats"]["rate"] == {"median": 10.0, "min": 5.0, "max": 15.0}
    assert mine["ratio"] == pytest.approx(0.5)
    assert summary["contenders"]["ref"]["ratio"] == 1.0
    assert len(mine["rounds"]) == 3
    assert summary["metrics"]["cpu"] == {"label": "cpu", "unit": "s", "better": "lower"}


def test_ratio_is_none_without_the_reference_or_when_it_is_zero() -> None:
    result = ScenarioResult("x", "t", "ref", METRICS)
    result.add("mine", {"rate": 1.0})
    assert result.ratio("mine") is None
    result.add("ref", {"rate": 0.0})
    assert result.ratio("mine") is None


def test_table_has_a_row_per_contender_with_median_min_max_and_ratio() -> None:
    table = render_table([_result()])
    lines = table.splitlines()
    assert lines[0] == "== e2e: title"
    mine = next(line for line in lines if line.startswith("mine"))
    assert mine.split() == ["mine", "10", "5", "15", "0.50", "4.00"]


def test_results_go_to_the_dated_directory_and_latest(tmp_path: Path) -> None:
    dated, latest = tmp_path / "2026-01-01", tmp_path / "latest"
    (latest).mkdir()
    (latest / "stale.png").write_bytes(b"x")
    path = write_results({"quick": True}, [_result()], dated, latest)
    doc = json.loads(path.read_text())
    assert doc["version"] == 1 and doc["quick"] is True
    assert doc["scenarios"]["e2e"]["contenders"]["mine"]["rate"] == 10.0
    assert json.loads((latest / "results.json").read_text()) == doc
    assert not (latest / "stale.png").exists()


def test_the_load_is_octet_counted_rfc5424_with_one_msgid_per_message() -> None:
    payloads = syslog_stream(101, 2, size=400)
    assert [len(p.ends) for p in payloads] == [51, 50]
    msgids = set()
    for payload in payloads:
        frames = FrameSplitter(65536).feed(payload.data)
        assert len(frames) == len(payload.ends)
        for frame in frames:
            assert 395 <= len(frame) <= 405
            record = parse_syslog(frame)
            assert "parse_error" not in record
            assert record["service"] == "benchapp"
            msgids.add(record["msgid"])
    assert msgids == {f"S{seq:010d}" for seq in range(101)}


def test_payload_counts_only_frames_whose_last_byte_was_sent() -> None:
    payload = syslog_stream(3, 1)[0]
    first, second, _ = payload.ends
    assert payload.complete(0) == 0
    assert payload.complete(first - 1) == 0
    assert payload.complete(first) == 1
    assert payload.complete(second + 5) == 2
    assert payload.complete(len(payload.data)) == 3


def test_latency_of_the_kth_message_is_first_seen_minus_sent() -> None:
    sent = SendResult(4, 1.0, 100.0, timeline=[(100.0, 2), (100.5, 4)])
    seen = Searchable.__new__(Searchable)
    seen.curve = [(100.2, 0), (101.0, 1), (101.2, 3), (100.9, 2), (102.0, 4)]
    # counts seen are made monotonic (a poll may lag), so k=2 is first seen at 101.2
    assert latencies(sent, seen, 4) == pytest.approx([1.0, 1.2, 0.7, 1.5])
    assert latencies(sent, seen, 2) == pytest.approx([1.0, 1.2])


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([], 50, 0.0), ([5.0], 99, 5.0), ([1.0, 2.0, 3.0, 4.0], 50, 2.5), ([0.0, 10.0], 99, 9.9)],
)
def test_percentile(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_exposition_sums_label_sets_and_skips_comments() -> None:
    text = (
        "# HELP a x\n# TYPE a counter\n"
        'a{url="1"} 3\na{url="2"} 4.5\nb 1e3\nc{x="y"} NaN\nnot a metric line\n'
    )
    values = parse_exposition(text)
    assert values["a"] == 7.5 and values["b"] == 1000.0
    assert "not" not in values


def test_synthetic_exporter_serves_distinct_series_with_new_values_each_scrape() -> None:
    exporter = SyntheticExporter(2_500)
    first, second = exporter.render().decode(), exporter.render().decode()
    samples = [line for line in first.splitlines() if not line.startswith("#")]
    assert len(samples) == 2_500 and len({s.rsplit(" ", 1)[0] for s in samples}) == 2_500
    assert first != second
    assert first.count("# TYPE") == 3  # at most 1,000 series per metric name
    exporter.server.server_close()


def test_configs_render_every_placeholder(tmp_path: Path) -> None:
    values = {"workdir": "/w", "port": 1, "es_port": 2, "index": "i", "exporter_port": 3,
              "remote_url": "http://x", "scrape_interval": "1s", "scrape_timeout": "1s"}  # fmt: skip
    for template in ("rsyslog.conf", "syslog-ng.conf", "prometheus.yml", "nginx-null.conf"):
        text = render(template, tmp_path / template, **values).read_text()
        assert "@" not in text.replace("@timestamp", "").replace("@version", "").replace(
            "@...@", ""
        ), template
    assert (peers_dir() / "rsyslog.conf").is_file()


def test_a_missing_placeholder_value_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DevServiceError, match="no value for @"):
        render("rsyslog.conf", tmp_path / "x.conf", workdir="/w")


def test_rounds_rotate_the_contenders() -> None:
    names = ["a", "b", "c"]
    assert [rotate(names, n) for n in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]
    ]  # fmt: skip
    assert rotate([], 3) == []


def test_tree_meter_follows_children_and_labels_them_with_their_root() -> None:
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', " \
        "'import time; time.sleep(5)']); time.sleep(5)"  # fmt: skip
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        meter = TreeMeter(lambda: {parent.pid: "parent"}, interval=0.05).start()
        for _ in range(100):
            tree = descendants({parent.pid: "parent"})
            if len(tree) == 2:
                break
            subprocess.run(["sleep", "0.05"], check=True)
        assert set(tree.values()) == {"parent"} and len(tree) == 2
        usage = meter.stop()
        assert set(usage.by_role) == {"parent"}
        assert usage.peak_rss_bytes > 0 and usage.cpu_s >= 0
        sample = read_proc(parent.pid)
        assert sample is not None and sample.rss_bytes > 0
    finally:
        for pid in descendants({parent.pid: "p"}):
            subprocess.run(["kill", str(pid)], check=False)
        parent.wait(10)
    assert read_proc(parent.pid) is None


def test_each_document_shape_carries_the_same_messages() -> None:
    [payload] = syslog_stream(3, 1)
    frames = FrameSplitter(65_536).feed(payload.data)
    docs = {shape: shape_documents(shape, frames, "idx") for shape in SHAPES}
    sources = {shape: [json.loads(s) for _, s in bulk] for shape, bulk in docs.items()}
    assert [d["msgid"] for d in sources["peer"]] == ["S0000000000", "S0000000001", "S0000000002"]
    assert set(sources["peer"][0]) == {
        "@timestamp", "host", "app", "procid", "msgid", "severity", "facility", "message"
    }  # fmt: skip
    assert json.loads(docs["peer"][0][0]) == {"index": {"_index": "idx"}}  # automatic ids
    for shape in ("killkrill", "killkrill-lean", "killkrill-dynamic"):
        assert [d["msgid"] for d in sources[shape]] == [d["msgid"] for d in sources["peer"]]
        assert [d["message"] for d in sources[shape]] == [d["message"] for d in sources["peer"]]
        assert json.loads(docs[shape][1][0])["index"]["_id"].endswith(":2-0")
    assert all("raw" in d for d in sources["killkrill"])
    assert not any("raw" in d for d in sources["killkrill-lean"])
