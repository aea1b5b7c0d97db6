"""doc-shape: what a syslog document costs Elasticsearch, by its shape and mapping.

The same RFC 5424 messages as the e2e scenario, indexed by the bench itself with ``_bulk``
(chunks of 500, one connection) into one fresh index per round and refreshed; the figure is
the CPU seconds of the Elasticsearch JVM per 100,000 documents (nothing else is metered:
the documents are built before the clock starts). Shapes:

* **peer** (reference): what rsyslog and syslog-ng send in the e2e scenario
  (``bench/peers/``): ``@timestamp``, host, app, procid, msgid, severity, facility and
  message, with the bench's peer template (keywords, ``message`` text) and automatic ids.
* **killkrill**: the log worker's document (the syslog receiver's record, enriched) under
  KillKrill's own index template, with its ``_id``.
* **killkrill-lean**: the same without ``raw`` (``syslog.keep_raw: false``).
* **killkrill-dynamic**: the full document under the template KillKrill had before its
  syslog fields were mapped: every string left to dynamic mapping (analysed text plus a
  ``.keyword``), ``raw`` included.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from killkrill.bench.context import BenchContext, rotate
from killkrill.bench.loadgen import syslog_stream
from killkrill.bench.proctree import TreeMeter
from killkrill.bench.results import Metric, ScenarioResult
from killkrill.config.workers import LogTransformSettings
from killkrill.errors import KillKrillError
from killkrill.receivers.syslog_framing import FrameSplitter
from killkrill.receivers.syslog_parser import parse_syslog
from killkrill.workers.logs.template import template_body
from killkrill.workers.logs.transform import LogTransformer

__all__ = ["SHAPES", "run", "shape_documents"]

SHAPES = ("peer", "killkrill", "killkrill-lean", "killkrill-dynamic")
CHUNK = 500

METRICS = (
    Metric("es_cpu_s_per_100k", "ES CPU-s/100k", "Elasticsearch CPU per 100k documents",
           "lower", 2),
    Metric("docs_per_s", "docs/s", "documents indexed per second, one connection"),
    Metric("doc_bytes", "bytes/doc", "mean size of a document's JSON", "none"),
)  # fmt: skip

Bulk = list[tuple[bytes, bytes]]
"""(action line, source) per document."""


def shape_documents(shape: str, frames: list[bytes], index: str) -> Bulk:
    """The ``_bulk`` lines of ``frames`` in ``shape``, into ``index``."""
    now = datetime.now(UTC)
    records = [parse_syslog(f, received_at=now, keep_raw=shape != "killkrill-lean") for f in frames]
    if shape == "peer":
        action = orjson.dumps({"index": {"_index": index}})
        return [(action, orjson.dumps(_peer_document(r))) for r in records]
    transformer = LogTransformer(
        LogTransformSettings(), pipeline="bench", stream="logs-stream", index_prefix=index
    )
    entries = [("logs-stream", f"{i + 1}-0", orjson.dumps(r)) for i, r in enumerate(records)]
    out: Bulk = []
    for doc in transformer.documents(entries):
        if isinstance(doc, Exception):
            raise KillKrillError(f"the bench's own record was refused: {doc}")
        # One index per shape and round (not the daily one the worker would pick).
        out.append((orjson.dumps({"index": {"_index": index, "_id": doc.id}}), doc.source))
    return out


def _peer_document(record: dict[str, Any]) -> dict[str, Any]:
    """rsyslog's template of ``bench/peers/rsyslog.conf``, field for field."""
    return {
        "@timestamp": record["timestamp"],
        "host": record.get("hostname"),
        "app": record["service"],
        "procid": record.get("procid"),
        "msgid": record.get("msgid"),
        "severity": record["severity"],
        "facility": record["facility"],
        "message": record["message"],
    }


def _template(shape: str, index: str) -> dict[str, Any] | None:
    """The index template of ``shape``'s index (None: the peers' one, already in place)."""
    if shape == "peer":
        return None
    body = template_body(index, number_of_replicas=0)
    body["_meta"] = body.pop("meta")
    body["priority"] = 900  # over the peers' kkbench-<run>-* template
    body["template"]["settings"]["index"]["number_of_shards"] = 1
    if shape == "killkrill-dynamic":
        mappings = body["template"]["mappings"]
        del mappings["dynamic_templates"]
        for name in list(mappings["properties"]):
            if name not in ("@timestamp", "timestamp", "processed_at", "service", "level",
                            "environment", "version", "message"):  # fmt: skip
                del mappings["properties"][name]
    return body


_HOSTNAME_TYPE = {"peer": None, "killkrill": "keyword", "killkrill-lean": "keyword",
                  "killkrill-dynamic": "text"}  # fmt: skip


def _check_mapping(ctx: BenchContext, shape: str, index: str) -> None:
    """The shape's index got the mapping it is meant to measure (its template applied)."""
    wanted = _HOSTNAME_TYPE[shape]
    if wanted is None:
        return
    properties = ctx.es.get(f"/{index}/_mapping").json()[index]["mappings"]["properties"]
    found = properties.get("hostname", {}).get("type")
    if found != wanted:
        raise KillKrillError(f"{shape}: hostname is mapped as {found}, not {wanted}")


def _index(ctx: BenchContext, bulk: Bulk) -> float:
    """Send ``bulk`` in chunks; seconds taken."""
    started = time.monotonic()
    for i in range(0, len(bulk), CHUNK):
        body = b"".join(b"%b\n%b\n" % pair for pair in bulk[i : i + CHUNK])
        resp = ctx.es.post("/_bulk", content=body, headers={"content-type": "application/x-ndjson"})
        resp.raise_for_status()
        answer = resp.json()
        if answer["errors"]:
            failed = next(i for i in answer["items"] if "error" in next(iter(i.values())))
            raise KillKrillError(f"Elasticsearch refused a bench document: {failed}")
    return time.monotonic() - started


def run(ctx: BenchContext) -> list[ScenarioResult]:
    count = 5_000 if ctx.quick else 100_000
    [payload] = syslog_stream(count, 1)
    frames = FrameSplitter(65_536).feed(payload.data)
    result = ScenarioResult(
        "doc-shape",
        "Elasticsearch CPU per syslog document, by document shape and mapping",
        "peer",
        METRICS,
        params={"documents": count, "bulk": CHUNK},
        notes=["one shard, no replica; refresh at the end counted; ES CPU only"],
    )
    ctx.put_peer_template()
    es_pid = ctx.services.elasticsearch_pid()
    for n in range(ctx.total_rounds):
        for shape in rotate(list(SHAPES), n):
            prefix = ctx.index_prefix("shape", shape, f"r{n}")
            index = f"{prefix}-docs"  # matches the template's `<prefix>-*`
            template = _template(shape, prefix)
            if template is not None:
                ctx.es.put(f"/_index_template/{prefix}", json=template).raise_for_status()
            ctx.es.put(f"/{index}").raise_for_status()  # created outside the window
            bulk = shape_documents(shape, frames, index)
            meter = TreeMeter(lambda: {es_pid: "elasticsearch"}).start()
            seconds = _index(ctx, bulk)
            ctx.refresh(index)
            usage = meter.stop()
            indexed = int(ctx.es.get(f"/{index}/_count").json()["count"])
            _check_mapping(ctx, shape, index)
            ctx.delete_indices(index)
            if template is not None:
                ctx.es.delete(f"/_index_template/{prefix}")
            if indexed != count:
                raise KillKrillError(f"{shape}: {indexed} of {count} documents indexed")
            figures = {
                "es_cpu_s_per_100k": usage.cpu_s / count * 100_000,
                "docs_per_s": count / seconds,
                "doc_bytes": sum(len(s) for _, s in bulk) / count,
            }
            ctx.echo(
                f"  {ctx.round_label('doc-shape', n)}: {shape}: "
                f"{figures['es_cpu_s_per_100k']:.2f} ES CPU-s/100k, "
                f"{figures['docs_per_s']:,.0f} docs/s, {figures['doc_bytes']:.0f} B/doc"
            )
            if ctx.counted(n):
                result.add(shape, figures)
    return [result]
