"""The backing services as pods (``killkrill dev kind services-image``): Redis keeps every
entry (AOF, noeviction), PostgreSQL 15 wants the password of its Secret, Elasticsearch is
the dev one (single node, security off, heap 512m); each reached through a port-forward on
127.0.0.1 and run restricted (uid 10001, read-only root file system)."""

from __future__ import annotations

import psycopg2
import pytest
import redis
from kind_cluster import KindEnv
from kind_stack import Services

from killkrill.dev.elasticsearch_server import VERSION as ES_VERSION


def test_redis_keeps_every_entry(kind_env: KindEnv, kind_services: Services) -> None:
    with kind_env.port_forward(kind_services.namespace, "service/redis", 6379) as port:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
        try:
            assert client.ping()
            assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
            assert client.config_get("appendonly") == {"appendonly": "yes"}
        finally:
            client.close()


def test_postgres_15_wants_the_secret_password(kind_env: KindEnv, kind_services: Services) -> None:
    with kind_services.postgres() as conn, conn.cursor() as cur:
        cur.execute("SHOW server_version_num")
        (version,) = cur.fetchone()
        assert int(version) // 10000 == 15
        cur.execute("SELECT current_user, current_database()")
        assert cur.fetchone() == ("killkrill", "killkrill")
    forward = kind_env.port_forward(kind_services.namespace, "service/postgres", 5432)
    with forward as port, pytest.raises(psycopg2.OperationalError, match="password auth"):
        psycopg2.connect(
                host="127.0.0.1", port=port, user="killkrill", password="wrong",
                dbname="killkrill", connect_timeout=30,
            )  # fmt: skip


def test_elasticsearch_is_the_dev_single_node(kind_services: Services) -> None:
    with kind_services.elasticsearch() as es:
        health = es.cluster.health(wait_for_status="yellow", timeout="60s")
        assert health["number_of_nodes"] == 1
        nodes = es.nodes.info(metric="jvm,settings")["nodes"]
        (node,) = nodes.values()
        assert node["version"] == ES_VERSION
        assert node["jvm"]["mem"]["heap_max_in_bytes"] == 512 * 1024 * 1024
        assert node["settings"]["discovery"]["type"] == "single-node"
        assert node["settings"]["xpack"]["security"]["enabled"] == "false"


def test_every_service_runs_restricted(kind_env: KindEnv, kind_services: Services) -> None:
    pods = kind_env.get("pods", "-n", kind_services.namespace)["items"]
    assert {p["metadata"]["labels"]["app.kubernetes.io/name"] for p in pods} == {
        "redis", "postgres", "elasticsearch",
    }  # fmt: skip
    for pod in pods:
        assert pod["spec"]["securityContext"]["runAsUser"] == 10001
        (container,) = pod["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
