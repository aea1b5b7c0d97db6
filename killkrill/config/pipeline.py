"""The ``Pipeline``: one document describing a whole KillKrill pipeline.

The same YAML is ``kubectl apply``-ed as a custom resource (``killkrill.io/v1alpha1``,
kind ``Pipeline``; its CRD schema is generated from these models by
:mod:`killkrill.config.crd`) and run locally with ``killkrill up -f pipeline.yaml``. Every
process's settings are *derived* from it by :func:`component_settings` - the operator
renders exactly that into a ConfigMap - so nothing is written twice.

On the wire the fields are camelCase (Kubernetes' convention), in Python snake_case; both
are accepted when loading. Every field has a default: ``spec: {}`` is a valid pipeline.
Defaults are those of the component settings (a batch of 500 logs, 60 s buckets, ...),
read from those models rather than repeated here.

Credentials are never part of the document: each connection names a Secret key
(``secretRef: {name, key}``) whose value the processes read from a file. In a cluster the
operator mounts the Secret at ``/var/run/secrets/killkrill/<name>/``; locally
``killkrill up -f`` reads ``<secrets dir>/<name>/<key>``. A URL holding a password is
refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from killkrill import __version__
from killkrill.config.common import ElasticsearchSettings, RedisSettings
from killkrill.config.receivers import (
    BackpressureSettings,
    HttpReceiverSettings,
    ReceiverSettings,
    RecordLimitSettings,
    SyslogSettings,
)
from killkrill.config.secrets import url_has_password
from killkrill.config.wire import Wire
from killkrill.config.workers import (
    AggregationSettings,
    LogWorkerSettings,
    MetricsWorkerSettings,
    RetentionSettings,
    RetrySettings,
)
from killkrill.errors import ConfigError

__all__ = [
    "API_VERSION",
    "DEFAULT_PIPELINE",
    "GROUP",
    "KIND",
    "NAME_MAX",
    "NAME_RULE",
    "PLURAL",
    "SECRETS_ROOT",
    "SHORT_NAME",
    "VERSION",
    "ComponentSettings",
    "Pipeline",
    "PipelineSpec",
    "SecretKeyRef",
    "component_settings",
    "load_pipeline",
    "parse_pipeline",
]

GROUP = "killkrill.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Pipeline"
PLURAL = "pipelines"
SHORT_NAME = "kkp"
DEFAULT_PIPELINE = "default"
"""The pipeline whose keys carry no prefix (the seed's stream names)."""

SECRETS_ROOT = Path("/var/run/secrets/killkrill")
"""Where the operator mounts each referenced Secret: ``<root>/<secret name>/<key>``."""

_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
NAME_MAX = 40
"""Longest pipeline name: its objects' names (``<name>-metrics-worker``) and Service names
(DNS-1035 labels, 63 at most, starting with a letter) must stay valid."""
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")

# Defaults of the component settings, read once, so the spec repeats none of them.
_LOG = LogWorkerSettings()
_METRICS = MetricsWorkerSettings()
_RECEIVER = ReceiverSettings()


class SecretKeyRef(Wire):
    """One key of a Secret in the pipeline's namespace."""

    name: str = Field(
        max_length=253,
        description="Name of the Secret (in the Pipeline's namespace).",
        json_schema_extra={"pattern": f"^{_DNS_SUBDOMAIN.pattern}$"},
    )
    key: str = Field(
        max_length=253,
        description="Key in the Secret whose value is the credential.",
        json_schema_extra={"pattern": f"^{_SECRET_KEY.pattern}$"},
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DNS_SUBDOMAIN.fullmatch(value):
            raise ValueError("must be a Secret name (lowercase letters, digits, '-' and '.')")
        return value

    @field_validator("key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not _SECRET_KEY.fullmatch(value):
            raise ValueError("must be a Secret key (letters, digits, '-', '_' and '.')")
        return value

    def path(self, root: Path) -> Path:
        """Where the value is read: ``<root>/<name>/<key>``."""
        return root / self.name / self.key


class SecretRef(Wire):
    """A whole Secret in the pipeline's namespace (e.g. a ``kubernetes.io/tls`` one)."""

    name: str = Field(
        max_length=253,
        description="Name of the Secret (in the Pipeline's namespace).",
        json_schema_extra={"pattern": f"^{_DNS_SUBDOMAIN.pattern}$"},
    )


def _no_password(value: str) -> str:
    if url_has_password(SecretStr(value)):
        raise ValueError("must not hold a password: put it in a Secret and name it with secretRef")
    return value


def _url_field(default: SecretStr, what: str) -> Any:
    return Field(
        default=default.get_secret_value(),
        min_length=1,
        description=f"{what} URL, without a password (a user name is fine): the password "
        "comes from `secretRef`. The process's own environment (REDIS_URL, "
        "ELASTICSEARCH_URL, DATABASE_URL) overrides it for a local run.",
    )


def _cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL rule of the CRD (``x-kubernetes-validations``): the twin, for ``kubectl
    apply``, of a check the model makes in Python. Fields may be absent where a rule runs
    (the API server checks the defaults too), hence the ``has()`` guards in the rules."""
    return {"rule": rule, "message": message} | ({"fieldPath": field_path} if field_path else {})


def _rules(*rules: dict[str, str]) -> ConfigDict:
    """A model config carrying ``rules`` into the CRD schema."""
    listed: list[JsonValue] = [dict(rule) for rule in rules]
    return ConfigDict(json_schema_extra={"x-kubernetes-validations": listed})


_NO_PASSWORD = _cel(
    "!has(self.url) || !self.url.matches('^[^:/]+://[^/@]*:[^/@]*@')",
    "url must not hold a password: put it in a Secret and name it with secretRef",
    ".url",
)


class RedisSpec(Wire):
    """The Redis holding the pipeline's streams."""

    model_config = _rules(_NO_PASSWORD)

    url: str = _url_field(RedisSettings().url, "Redis")
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the Redis (ACL) password. Default: none."
    )

    _url = field_validator("url")(_no_password)


class PostgresSpec(Wire):
    """The PostgreSQL database holding the metric aggregates."""

    model_config = _rules(_NO_PASSWORD)

    url: str = _url_field(
        SecretStr("postgresql://killkrill@127.0.0.1:5432/killkrill"), "PostgreSQL"
    )
    secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the database user's password."
    )

    _url = field_validator("url")(_no_password)


class EnrichmentSpec(Wire):
    """Fields the log worker adds to every document (a record's own value wins)."""

    environment: str = Field(
        default=_LOG.transform.environment, description="The `environment` field."
    )
    version: str = Field(
        default=__version__,
        description="The `version` field (default: KillKrill's version).",
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Extra static fields, name -> value (e.g. `cluster: eu-1`).",
    )


class ElasticsearchSpec(Wire):
    """The Elasticsearch cluster logs are indexed into."""

    model_config = _rules(
        _NO_PASSWORD,
        _cel(
            "!has(self.username) || has(self.secretRef)",
            "username needs secretRef (the Secret key holding its password)",
            ".secretRef",
        ),
    )

    url: str = _url_field(ElasticsearchSettings().url, "Elasticsearch")
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding an API key (`encoded`, or `id:api_key`), or the "
        "password of `username` when that is set.",
    )
    username: str | None = Field(
        default=None, min_length=1, description="User for basic auth (password: `secretRef`)."
    )
    ca_secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the PEM CA of the cluster's certificate (e.g. ECK's "
        "`<cluster>-es-http-certs-public`, key `ca.crt`). Default: the system's CAs.",
    )
    verify_certs: bool = Field(default=True, description="Verify the TLS certificate.")
    index_prefix: str = Field(
        default=_LOG.elasticsearch.index_prefix,
        min_length=1,
        max_length=200,
        description="Documents go to `<indexPrefix>-YYYY.MM.DD`; give each pipeline its own.",
        json_schema_extra={"pattern": r"^[a-z0-9][-_.a-z0-9+]*$"},
    )
    number_of_replicas: int | None = Field(
        default=None,
        ge=0,
        description="Replicas of each daily index (default: the cluster's; 0 on one node).",
    )
    enrichment: EnrichmentSpec = Field(default_factory=EnrichmentSpec)
    ecs: bool = Field(
        default=False,
        description="Write documents in the Elastic Common Schema shape (`log.level`, "
        "`service.name`, `labels`, ...) instead of the record's own shape.",
    )

    _url = field_validator("url")(_no_password)

    @model_validator(mode="after")
    def _basic_auth(self) -> ElasticsearchSpec:
        if self.username is not None and self.secret_ref is None:
            raise ValueError("username needs secretRef (the Secret key holding its password)")
        return self


class StreamsSpec(Wire):
    """The streams of the pipeline: the only ones receivers may write."""

    model_config = _rules(
        _cel(
            "!has(self.logs) || !has(self.metrics) || (self.logs != self.metrics && "
            "(!has(self.extra) || self.extra.all(n, n != self.logs && n != self.metrics)))",
            "a stream name is used twice among logs, metrics and extra",
        )
    )

    logs: str = Field(
        default="logs",
        max_length=100,
        description="Name of the log stream (key `<name>-stream`, prefixed `<pipeline>:` "
        "for every pipeline but `default`).",
        json_schema_extra={"pattern": r"^[A-Za-z0-9_.-]{1,100}$"},
    )
    metrics: str = Field(
        default="metrics",
        max_length=100,
        description="Name of the default metric stream (used without `?stream=`).",
        json_schema_extra={"pattern": r"^[A-Za-z0-9_.-]{1,100}$"},
    )
    extra: list[str] = Field(
        default_factory=list,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-list-type": "set",
            "items": {"type": "string", "maxLength": 100, "pattern": r"^[A-Za-z0-9_.-]{1,100}$"},
        },
        description="More named metric streams (`?stream=NAME`), each read by the metrics "
        "worker with its own consumer group.",
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=1,
        description="Partitions of each stream. Reserved for scale-out beyond one Redis "
        "node: 1 is the only value today.",
    )

    @model_validator(mode="after")
    def _names(self) -> StreamsSpec:
        names = [self.logs, self.metrics, *self.extra]
        bad = [n for n in names if not re.fullmatch(r"[A-Za-z0-9_.-]{1,100}", n)]
        if bad:
            raise ValueError(f"stream names {bad} may hold only letters, digits and _ . -")
        if len(set(names)) != len(names):
            raise ValueError("a stream name is used twice among logs, metrics and extra")
        return self

    @property
    def metric_streams(self) -> list[str]:
        return [self.metrics, *self.extra]


class AuthSpec(Wire):
    """API keys of the HTTP receiver."""

    enabled: bool = Field(default=True, description="Require an API key on ingest endpoints.")
    secret_ref: SecretKeyRef | None = Field(
        default=None,
        description="Secret key holding the keys file (`keys: [{name, sha256|key, scopes, "
        "streams}]`, YAML). Re-read when the Secret changes, without a restart.",
    )


class LimitsSpec(RecordLimitSettings, Wire):
    """Bounds of one record (see the receiver settings)."""


class BackpressureSpec(BackpressureSettings, Wire):
    """When receivers push back (429/503 + Retry-After) instead of growing a stream."""


_HTTP = HttpReceiverSettings()


class HttpSpec(Wire):
    """The HTTP ingest API (logs, metrics, remote_write)."""

    enabled: bool = Field(default=True, description="Run the HTTP API.")
    replicas: int = Field(default=1, ge=0, le=100, description="Receiver pods.")
    port: int = Field(default=_HTTP.port, ge=1, le=65535, description="Container and Service port.")
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Type of the `<pipeline>-receiver` Service."
    )
    auth: AuthSpec = Field(default_factory=AuthSpec)
    max_body_bytes: int = Field(
        default=_HTTP.max_body_bytes, ge=1024, description="Request body as sent, bytes."
    )
    max_batch_records: int = Field(
        default=_HTTP.max_batch_records, ge=1, le=_HTTP.max_batch_records,
        description="Records in one request.",
    )  # fmt: skip
    max_concurrent_requests: int = Field(
        default=_HTTP.max_concurrent_requests, ge=1, description="Requests handled at once."
    )
    limits: LimitsSpec = Field(default_factory=LimitsSpec)
    backpressure: BackpressureSpec = Field(default_factory=BackpressureSpec)


_SYSLOG = SyslogSettings()


class SyslogTlsSpec(Wire):
    """Syslog over TLS (RFC 5425)."""

    model_config = _rules(
        _cel(
            "!has(self.enabled) || !self.enabled || has(self.secretRef)",
            "tls.secretRef is required when tls.enabled is true",
            ".secretRef",
        )
    )

    enabled: bool = Field(default=False, description="Listen for TLS.")
    port: int = Field(default=6514, ge=1, le=65535, description="TLS port.")
    secret_ref: SecretRef | None = Field(
        default=None,
        description="A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`). Required when enabled.",
    )


class SyslogSpec(Wire):
    """The syslog receiver (RFC 5424/3164 over UDP, TCP, TLS)."""

    enabled: bool = Field(default=True, description="Run the syslog receiver.")
    udp_port: int | None = Field(
        default=_SYSLOG.port, ge=1, le=65535, description="UDP port (null: no UDP)."
    )
    tcp_port: int | None = Field(
        default=_SYSLOG.port, ge=1, le=65535, description="TCP port (null: no TCP)."
    )
    tls: SyslogTlsSpec = Field(default_factory=SyslogTlsSpec)
    rfc3164_timezone: str = Field(
        default=_SYSLOG.rfc3164_timezone,
        description="IANA zone of RFC 3164 timestamps, which carry none.",
    )
    keep_raw: bool = Field(
        default=_SYSLOG.keep_raw,
        description="Keep each message as received in `raw` (false: the lean record).",
    )

    @model_validator(mode="after")
    def _tls(self) -> SyslogSpec:
        if self.tls.enabled and self.tls.secret_ref is None:
            raise ValueError("tls.secretRef is required when tls.enabled is true")
        if (
            self.enabled
            and self.udp_port is None
            and self.tcp_port is None
            and not (self.tls.enabled)
        ):
            raise ValueError("enabled syslog needs a udpPort, a tcpPort or tls")
        return self


class RemoteWriteSpec(Wire):
    """Prometheus remote_write (``POST /api/v1/write``) on the HTTP port."""

    enabled: bool = Field(default=True, description="Accept remote_write.")


class ReceiversSpec(Wire):
    """The receiver pods: HTTP API, syslog, remote_write."""

    http: HttpSpec = Field(default_factory=HttpSpec)
    syslog: SyslogSpec = Field(default_factory=SyslogSpec)
    remote_write: RemoteWriteSpec = Field(default_factory=RemoteWriteSpec)


class RetrySpec(RetrySettings, Wire):
    """Retries of a batch's retryable items before they are left pending."""


class AutoscalingSpec(Wire):
    """Worker replicas from the stream's consumer-group lag."""

    model_config = _rules(
        _cel(
            "!has(self.minReplicas) || !has(self.maxReplicas) || "
            "self.minReplicas <= self.maxReplicas",
            "maxReplicas must be >= minReplicas",
            ".maxReplicas",
        )
    )

    enabled: bool = Field(
        default=False, description="Scale between minReplicas and maxReplicas on lag."
    )
    external: bool = Field(
        default=False,
        description="An HPA or KEDA owns the replicas (via the scale subresource): the "
        "operator then never sets them.",
    )
    min_replicas: int = Field(default=1, ge=0, le=100, description="Fewest replicas.")
    max_replicas: int = Field(default=4, ge=1, le=100, description="Most replicas.")
    target_lag: int = Field(
        default=10_000,
        ge=1,
        description="Entries waiting per replica the operator aims for: replicas = "
        "ceil(lag / targetLag), within the bounds.",
    )
    cooldown_seconds: int = Field(
        default=300,
        ge=0,
        description="Least time between two scale-downs (scale-ups are immediate).",
    )

    @field_validator("max_replicas")
    @classmethod
    def _bounds(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and value < low:
            raise ValueError("must be >= minReplicas")
        return value


class ResourcesSpec(Wire):
    """Container resources (Kubernetes quantities)."""

    requests: dict[str, str] = Field(
        default_factory=lambda: {"cpu": "100m", "memory": "128Mi"},
        description="Requests, e.g. `{cpu: 100m, memory: 128Mi}`.",
    )
    limits: dict[str, str] = Field(
        default_factory=lambda: {"memory": "512Mi"},
        description="Limits, e.g. `{memory: 512Mi}`.",
    )

    @field_validator("requests", "limits")
    @classmethod
    def _quantities(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{k}={v}" for k, v in value.items() if not _QUANTITY.fullmatch(v)]
        if bad:
            raise ValueError(f"not Kubernetes quantities: {', '.join(bad)} (e.g. 100m, 128Mi)")
        return value


class WorkerSpec(Wire):
    """Pods of one worker kind: how many, how they batch, retry and scale."""

    replicas: int = Field(default=1, ge=0, le=100, description="Pods (when autoscaling is off).")
    batch_size: int = Field(
        default=_LOG.consumer.batch_size,
        ge=1,
        le=100_000,
        description="Entries per batch: one `_bulk` request (logs) or one transaction (metrics).",
    )
    in_flight: int = Field(
        default=_LOG.consumer.in_flight,
        ge=1,
        le=16,
        description="Writes (`_bulk` requests, transactions) one pod keeps open at once.",
    )
    max_deliveries: int = Field(
        default=_LOG.consumer.max_deliveries,
        ge=1,
        description="Deliveries before an entry is dead-lettered.",
    )
    retry: RetrySpec = Field(default_factory=RetrySpec)
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)


class LogWorkerSpec(WorkerSpec):
    """The log worker pods (stream -> Elasticsearch)."""


class MetricsWorkerSpec(WorkerSpec):
    """The metrics worker pods (streams -> PostgreSQL -> /metrics)."""

    batch_size: int = Field(
        default=_METRICS.consumer.batch_size,
        ge=1,
        le=100_000,
        description="Entries per batch, each batch one transaction.",
    )


# The other consumer defaults are the same for both kinds: checked, not assumed.
assert (_METRICS.consumer.in_flight, _METRICS.consumer.max_deliveries) == (
    _LOG.consumer.in_flight,
    _LOG.consumer.max_deliveries,
)


_AGG = AggregationSettings()
_RET = RetentionSettings()


class MetricsSpec(Wire):
    """How samples are aggregated and kept."""

    bucket_seconds: int = Field(
        default=_AGG.bucket_seconds, ge=1, le=86_400, description="Aggregation bucket width."
    )
    retention_seconds: int = Field(
        default=_RET.max_age_seconds, ge=60, description="Buckets older than this are pruned."
    )
    cardinality_cap: int = Field(
        default=_AGG.max_series_per_metric,
        ge=1,
        description="Label sets one metric name may have; samples past it are dead-lettered.",
    )


class ImageSpec(Wire):
    """The image every pod of the pipeline runs (used by the operator)."""

    repository: str = Field(default="killkrill/killkrill", min_length=1)
    tag: str = Field(default=__version__, min_length=1)
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(default="IfNotPresent")

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"


class PipelineSpec(Wire):
    """What a pipeline is made of. Every field has a default."""

    redis: RedisSpec = Field(default_factory=RedisSpec)
    elasticsearch: ElasticsearchSpec = Field(default_factory=ElasticsearchSpec)
    postgres: PostgresSpec = Field(default_factory=PostgresSpec)
    streams: StreamsSpec = Field(default_factory=StreamsSpec)
    receivers: ReceiversSpec = Field(default_factory=ReceiversSpec)
    log_worker: LogWorkerSpec = Field(default_factory=LogWorkerSpec)
    metrics_worker: MetricsWorkerSpec = Field(default_factory=MetricsWorkerSpec)
    metrics: MetricsSpec = Field(default_factory=MetricsSpec)
    image: ImageSpec = Field(default_factory=ImageSpec)


class Metadata(BaseModel):
    """The object's metadata; only ``name`` (and ``namespace``) matter here."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(default=DEFAULT_PIPELINE)
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value) or len(value) > NAME_MAX:
            raise ValueError(
                f"must be 1-{NAME_MAX} lowercase letters, digits and '-', starting with a "
                "letter (it names the pipeline's Services)"
            )
        return value


NAME_RULE = _cel(
    f"self.metadata.name.size() <= {NAME_MAX} && self.metadata.name.matches('^{_NAME.pattern}$')",
    f"metadata.name must be 1-{NAME_MAX} lowercase letters, digits and '-', starting with a "
    "letter (it names the pipeline's Services)",
)
"""The CEL twin of the name check, on the resource's root schema."""


class Pipeline(Wire):
    """A ``killkrill.io/v1alpha1`` ``Pipeline`` document."""

    model_config = ConfigDict(extra="ignore")  # status, written by the operator

    api_version: Literal["killkrill.io/v1alpha1"] = "killkrill.io/v1alpha1"
    kind: Literal["Pipeline"] = "Pipeline"
    metadata: Metadata = Field(default_factory=Metadata)
    spec: PipelineSpec = Field(default_factory=PipelineSpec)

    @property
    def name(self) -> str:
        return self.metadata.name

    def document(self) -> dict[str, Any]:
        """The document as YAML/JSON data (camelCase), as one would ``kubectl apply`` it."""
        out: dict[str, Any] = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {"name": self.name}
            | ({"namespace": self.metadata.namespace} if self.metadata.namespace else {}),
            "spec": self.spec.model_dump(mode="json", exclude_unset=True),
        }
        return out


def parse_pipeline(data: Any, *, source: str = "pipeline") -> Pipeline:
    """Validate a ``Pipeline`` document; :class:`ConfigError` lists every error with its field
    path (``spec.logWorker.autoscaling.maxReplicas: must be >= minReplicas``)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a Pipeline document is a mapping, not {type(data).__name__}")
    try:
        return Pipeline.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(f"{source}: invalid Pipeline:\n" + _error_lines(exc)) from None


def _error_lines(exc: PydanticValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {path}: {message}" if path else f"  {message}")
    return "\n".join(lines)


def load_pipeline(path: str | Path) -> Pipeline:
    """The ``Pipeline`` in the YAML/JSON file at ``path`` (one document)."""
    p = Path(path)
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text(encoding="utf-8")) if d is not None]
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from None
    pipelines = [d for d in docs if isinstance(d, dict) and d.get("kind") == KIND]
    if len(pipelines) != 1:
        raise ConfigError(
            f"{p}: expected one document of kind: {KIND} (apiVersion: {API_VERSION}), found "
            f"{len(pipelines)}"
        )
    return parse_pipeline(pipelines[0], source=str(p))


# --- derivation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentSettings:
    """The settings of each process of one pipeline (see :func:`component_settings`)."""

    receiver: ReceiverSettings
    log_worker: LogWorkerSettings
    metrics_worker: MetricsWorkerSettings

    def for_this_process(self) -> ComponentSettings:
        """These settings as a process here runs them: each loaded with the environment's
        layers on top (``KILLKRILL_*``, ``REDIS_URL``...) and its password files read."""
        doc = self.config_document()
        return ComponentSettings(
            ReceiverSettings.load(base=doc[ReceiverSettings.config_section]),
            LogWorkerSettings.load(base=doc[LogWorkerSettings.config_section]),
            MetricsWorkerSettings.load(base=doc[MetricsWorkerSettings.config_section]),
        )

    def config_document(self) -> dict[str, Any]:
        """One config file for every process (each reads its section): what the operator
        puts in the pipeline's ConfigMap and ``killkrill up -f`` writes to disk. URLs are
        written out (a pipeline's URLs hold no password); credentials stay file paths."""
        return {
            ReceiverSettings.config_section: _plain(self.receiver),
            LogWorkerSettings.config_section: _plain(self.log_worker),
            MetricsWorkerSettings.config_section: _plain(self.metrics_worker),
        }


def _plain(settings: BaseModel) -> dict[str, Any]:
    data = settings.model_dump(mode="python", exclude_unset=True)
    return _reveal(data)  # type: ignore[no-any-return]


def _reveal(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reveal(v) for v in value]
    return value


def component_settings(
    pipeline: Pipeline, *, secrets_dir: Path = SECRETS_ROOT
) -> ComponentSettings:
    """Each process's settings for ``pipeline``: the one derivation the operator and
    ``killkrill up -f`` share. Referenced Secrets become file paths under ``secrets_dir``
    (``<secrets_dir>/<name>/<key>``), read by the processes at start."""
    spec, name = pipeline.spec, pipeline.name

    def file(ref: SecretKeyRef | None) -> str | None:
        return str(ref.path(secrets_dir)) if ref is not None else None

    redis = {
        "url": spec.redis.url,
        "password_file": file(spec.redis.secret_ref),
    }
    es = spec.elasticsearch
    elasticsearch: dict[str, Any] = {
        "url": es.url,
        "index_prefix": es.index_prefix,
        "verify_certs": es.verify_certs,
        "ca_file": file(es.ca_secret_ref),
    }
    if es.username is not None:
        elasticsearch |= {"username": es.username, "password_file": file(es.secret_ref)}
    elif es.secret_ref is not None:
        elasticsearch["api_key_file"] = file(es.secret_ref)
    http, syslog = spec.receivers.http, spec.receivers.syslog
    tls_dir = secrets_dir / syslog.tls.secret_ref.name if syslog.tls.secret_ref else None
    receiver = ReceiverSettings.validate_settings(
        {
            "pipeline": name,
            "redis": redis,
            "streams": [spec.streams.logs, *spec.streams.metric_streams],
            "log_stream": spec.streams.logs,
            "default_metric_stream": spec.streams.metrics,
            "http": {
                "port": http.port,
                "max_body_bytes": http.max_body_bytes,
                "max_batch_records": http.max_batch_records,
                "max_concurrent_requests": http.max_concurrent_requests,
                "remote_write": spec.receivers.remote_write.enabled,
            },
            "syslog": {
                "port": syslog.tcp_port or syslog.udp_port or _SYSLOG.port,
                "udp_port": syslog.udp_port,
                "udp": syslog.udp_port is not None,
                "tcp": syslog.tcp_port is not None,
                "tls_port": syslog.tls.port if syslog.tls.enabled else None,
                "tls_cert": str(tls_dir / "tls.crt") if syslog.tls.enabled and tls_dir else None,
                "tls_key": str(tls_dir / "tls.key") if syslog.tls.enabled and tls_dir else None,
                "rfc3164_timezone": syslog.rfc3164_timezone,
                "keep_raw": syslog.keep_raw,
            },
            "limits": http.limits.model_dump(by_alias=False),
            "backpressure": http.backpressure.model_dump(by_alias=False),
            "auth": {
                "enabled": http.auth.enabled,
                "keys_file": file(http.auth.secret_ref),
            },
        }
    )
    lw = spec.log_worker
    log_worker = LogWorkerSettings.validate_settings(
        {
            "pipeline": name,
            "redis": redis,
            "elasticsearch": elasticsearch,
            "log_stream": spec.streams.logs,
            "consumer": {
                "batch_size": lw.batch_size,
                "in_flight": lw.in_flight,
                "max_deliveries": lw.max_deliveries,
            },
            "retry": lw.retry.model_dump(by_alias=False),
            "transform": {
                "environment": es.enrichment.environment,
                "version": es.enrichment.version,
                "fields": es.enrichment.fields,
                "ecs": es.ecs,
            },
            "number_of_replicas": es.number_of_replicas,
        }
    )
    mw = spec.metrics_worker
    metrics_worker = MetricsWorkerSettings.validate_settings(
        {
            "pipeline": name,
            "redis": redis,
            "database": {
                "url": spec.postgres.url,
                "password_file": file(spec.postgres.secret_ref),
            },
            "streams": spec.streams.metric_streams,
            "consumer": {
                "batch_size": mw.batch_size,
                "in_flight": mw.in_flight,
                "max_deliveries": mw.max_deliveries,
            },
            "retry": mw.retry.model_dump(by_alias=False),
            "aggregation": {
                "bucket_seconds": spec.metrics.bucket_seconds,
                "max_series_per_metric": spec.metrics.cardinality_cap,
            },
            "retention": {"max_age_seconds": spec.metrics.retention_seconds},
        }
    )
    return ComponentSettings(receiver, log_worker, metrics_worker)
