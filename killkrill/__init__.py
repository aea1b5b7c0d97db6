"""KillKrill: a Kubernetes-native log and metrics pipeline.

Receivers validate what shippers send and append it to Redis Streams; workers read
those streams through consumer groups and write to Elasticsearch (logs) and
PostgreSQL (metric aggregates); an operator reconciles ``Pipeline`` resources.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
