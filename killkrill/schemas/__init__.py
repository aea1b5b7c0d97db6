"""Record schemas shared by receivers and workers: log records and metric samples.

* :class:`LogRecord`, :func:`parse_log_record`, :func:`validate_log` - log entries.
* :class:`MetricSample`, :class:`MetricType`, :func:`parse_metric_sample`,
  :func:`validate_metric` - metric entries.
* :func:`normalise_level`, :func:`parse_timestamp`, :func:`format_timestamp` - the rules
  both use, :class:`RecordLimits` for size limits and the accepted time window
  (:class:`TimeWindow`, from :meth:`RecordLimits.window`).

``validate_*`` are the receivers' fast path (dict in, normalised dict out); ``parse_*``
return typed models for the workers. Both raise :class:`killkrill.errors.ValidationError`
(``LogParseError`` for logs) naming the field.
"""

from killkrill.schemas.levels import LEVELS, Level, normalise_level
from killkrill.schemas.limits import UNLIMITED, RecordLimits, TimeWindow
from killkrill.schemas.log import (
    LOG_REQUIRED_FIELDS,
    LogRecord,
    check_log_limits,
    is_canonical_log,
    parse_log_record,
    validate_log,
)
from killkrill.schemas.metric import (
    LABEL_NAME_RE,
    METRIC_NAME_RE,
    MetricSample,
    MetricType,
    parse_metric_sample,
    validate_metric,
)
from killkrill.schemas.timestamps import (
    format_timestamp,
    normalise_timestamp,
    parse_timestamp,
)

__all__ = [
    "LABEL_NAME_RE",
    "LEVELS",
    "LOG_REQUIRED_FIELDS",
    "METRIC_NAME_RE",
    "UNLIMITED",
    "Level",
    "LogRecord",
    "MetricSample",
    "MetricType",
    "RecordLimits",
    "TimeWindow",
    "check_log_limits",
    "format_timestamp",
    "is_canonical_log",
    "normalise_level",
    "normalise_timestamp",
    "parse_log_record",
    "parse_metric_sample",
    "parse_timestamp",
    "validate_log",
    "validate_metric",
]
