"""The receivers' own Prometheus metrics (``killkrill_receiver_*``), one registry each.

A registry per receiver instance keeps tests and a combined HTTP+syslog process apart.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ReceiverMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ReceiverMetrics:
    """Counters and histograms shared by the HTTP and syslog receivers."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.accepted = Counter(
            "killkrill_receiver_accepted_records",
            "Records appended to a stream, by kind (logs/metrics) and protocol.",
            ["kind", "protocol"],
            registry=r,
        )
        self.rejected = Counter(
            "killkrill_receiver_rejected_records",
            "Records or requests refused, by kind and reason (invalid, non_finite, auth, "
            "too_large, backpressure, unavailable ...).",
            ["kind", "reason"],
            registry=r,
        )
        self.received_bytes = Counter(
            "killkrill_receiver_received_bytes",
            "Bytes received (as sent, before decompression), by protocol.",
            ["protocol"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "killkrill_receiver_request_duration_seconds",
            "HTTP ingest request latency, by endpoint and status.",
            ["endpoint", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_write_seconds = Histogram(
            "killkrill_receiver_redis_write_duration_seconds",
            "Time to append one batch to Redis, by stream kind.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.syslog_messages = Counter(
            "killkrill_receiver_syslog_messages",
            "Syslog messages read, by transport (udp/tcp/tls) and format "
            "(rfc5424/rfc3164/unparsed).",
            ["transport", "format"],
            registry=r,
        )
        self.syslog_oversized = Counter(
            "killkrill_receiver_syslog_oversized_frames",
            "Syslog frames larger than syslog.max_frame_bytes, dropped.",
            ["transport"],
            registry=r,
        )
        self.syslog_udp_dropped = Counter(
            "killkrill_receiver_syslog_udp_dropped",
            "UDP syslog messages dropped because the queue to Redis was full.",
            registry=r,
        )
        self.syslog_connections = Gauge(
            "killkrill_receiver_syslog_connections",
            "Open TCP/TLS syslog connections.",
            registry=r,
        )
        self.syslog_paused = Counter(
            "killkrill_receiver_syslog_paused_seconds",
            "Seconds syslog reading was paused by backpressure or Redis being unavailable.",
            registry=r,
        )
        self.syslog_waiting_writes = Gauge(
            "killkrill_receiver_syslog_waiting_writes",
            "Syslog batches read and waiting for Redis to take them (backpressure or Redis "
            "down); their connections' reading pauses once syslog.tcp_buffer_bytes is held.",
            registry=r,
        )
        self.syslog_read_paused = Gauge(
            "killkrill_receiver_syslog_read_paused_connections",
            "TCP/TLS syslog connections not being read because what they sent is not in "
            "Redis yet (syslog.tcp_buffer_bytes); TCP flow control slows their senders.",
            registry=r,
        )
        self.syslog_frames_read = Counter(
            "killkrill_receiver_syslog_read_frames",
            "Syslog frames read off a socket (TCP/TLS frames, UDP datagrams queued), by "
            "transport. Each is written, rejected (invalid) or lost (shutdown).",
            ["transport"],
            registry=r,
        )
        self.syslog_lost = Counter(
            "killkrill_receiver_syslog_lost_frames",
            "Syslog frames read but never written: `shutdown` (Redis refused them until "
            "syslog.drain_timeout ran out), `incomplete` (a frame cut off by the shutdown).",
            ["reason"],
            registry=r,
        )
        self.syslog_udp_queued_bytes = Gauge(
            "killkrill_receiver_syslog_udp_queued_bytes",
            "Bytes of UDP messages held until Redis has them (syslog.udp_queue_bytes bounds it).",
            registry=r,
        )
        self.syslog_refused_connections = Counter(
            "killkrill_receiver_syslog_refused_connections",
            "TCP/TLS syslog connections closed on arrival: syslog.max_connections were open.",
            registry=r,
        )
        self.syslog_idle_closed = Counter(
            "killkrill_receiver_syslog_idle_closed_connections",
            "TCP/TLS syslog connections closed after syslog.idle_timeout seconds of silence.",
            registry=r,
        )
        self.http_in_flight = Gauge(
            "killkrill_receiver_http_in_flight_requests",
            "Ingest requests being handled (http.max_concurrent_requests bounds it).",
            registry=r,
        )
        self.stream_backlog = Gauge(
            "killkrill_receiver_stream_backlog_entries",
            "Unprocessed entries on each declared stream, as last read (at /readyz, at each "
            "scrape, and when a write is refused).",
            ["stream"],
            registry=r,
        )
        self.stream_backlog_limit = Gauge(
            "killkrill_receiver_stream_backlog_limit_entries",
            "backpressure.max_backlog: a stream at it gets 429 (HTTP) / paused reads (TCP).",
            registry=r,
        )
