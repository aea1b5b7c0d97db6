"""Receivers: validate what shippers send and append it to Redis Streams.

One module per job, all over one append path (:class:`~killkrill.receivers.sink.StreamSink`):

* ``http_app`` - the HTTP API (logs, metrics, remote_write, health, metrics, OpenAPI);
  ``http_server`` - uvicorn under it, with a deadline on request headers.
* ``syslog_server`` (+ ``syslog_parser``, ``syslog_framing``) - RFC 5424/3164 over UDP/TCP/TLS.
* ``remote_write`` (+ ``protobuf``), ``promtext`` - Prometheus wire formats, pure decoders.
* ``batch``, ``body``, ``auth``, ``errors`` - request decoding, limits and answers;
  ``limits`` - the record limits from the settings.
* ``sink`` - the declared streams and the one append path; ``metrics`` - their metrics.
* ``run`` - the process: serve (and the ops port) until SIGTERM, drain, exit 0.
"""

from killkrill.receivers.http_app import build_http_app
from killkrill.receivers.run import serve
from killkrill.receivers.syslog_parser import parse_syslog
from killkrill.receivers.syslog_server import SyslogServer

__all__ = ["SyslogServer", "build_http_app", "parse_syslog", "serve"]
