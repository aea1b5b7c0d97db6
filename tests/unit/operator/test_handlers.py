"""The operator's kopf registry: no handler puts a finalizer on Pipelines (a Pipeline must
be deletable when no operator runs: helm uninstall, namespace deletion)."""

from __future__ import annotations

from kopf._core.intents import handlers as kopf_handlers

from killkrill.operator.handlers import registry
from killkrill.operator.kube import KubeClient, KubeConfig


def test_no_handler_requires_a_finalizer() -> None:
    client = KubeClient(KubeConfig(server="https://127.0.0.1:1"))
    try:
        reg = registry(client, interval=3.0)
    finally:
        client.close()
    timers = [
        h for h in reg._spawning.get_all_handlers() if isinstance(h, kopf_handlers.TimerHandler)
    ]
    assert [(h.id, h.interval) for h in timers] == [("periodic", 3.0)]
    spawning = reg._spawning.get_all_handlers()
    changing = reg._changing.get_all_handlers()
    assert not [h for h in [*spawning, *changing] if h.requires_finalizer]
