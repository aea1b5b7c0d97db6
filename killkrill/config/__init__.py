"""One config model for every KillKrill component.

The ``Pipeline`` spec (the CRD's schema), each process's settings and the docs all come from
the pydantic models in this package. Groups live in their own module; this module re-exports
them so ``from killkrill.config import RedisSettings`` is the one import users need.

Process settings are read from, lowest to highest precedence: field defaults, a YAML/JSON
config file, ``KILLKRILL_*`` environment variables (nested with ``__``, e.g.
``KILLKRILL_REDIS__URL``), the well-known variables ``REDIS_URL``, ``ELASTICSEARCH_URL`` and
``DATABASE_URL``, and finally command-line flags.
"""

from killkrill.config.common import (
    DatabaseSettings,
    ElasticsearchSettings,
    ProcessSettings,
    RedisSettings,
    load_config_file,
    merge_settings,
    set_dotted,
)
from killkrill.config.receivers import (
    ApiKey,
    AuthSettings,
    BackpressureSettings,
    HttpReceiverSettings,
    ReceiverSettings,
    RecordLimitSettings,
    SyslogSettings,
    hash_api_key,
)
from killkrill.config.secrets import read_secret_file, redact_url
from killkrill.config.workers import (  # log worker, shared consumer/retry, metrics worker
    AggregationSettings,
    ConsumerSettings,
    ExpositionSettings,
    LogTransformSettings,
    LogWorkerSettings,
    MetricsWorkerSettings,
    OpsSettings,
    RetentionSettings,
    RetrySettings,
)

__all__ = [
    "AggregationSettings",
    "ApiKey",
    "AuthSettings",
    "BackpressureSettings",
    "ConsumerSettings",
    "DatabaseSettings",
    "ElasticsearchSettings",
    "ExpositionSettings",
    "HttpReceiverSettings",
    "LogTransformSettings",
    "LogWorkerSettings",
    "MetricsWorkerSettings",
    "OpsSettings",
    "ProcessSettings",
    "ReceiverSettings",
    "RecordLimitSettings",
    "RedisSettings",
    "RetentionSettings",
    "RetrySettings",
    "SyslogSettings",
    "hash_api_key",
    "load_config_file",
    "merge_settings",
    "read_secret_file",
    "redact_url",
    "set_dotted",
]
