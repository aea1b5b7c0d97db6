"""One way to write objects: server-side apply, one field manager, owned by the Pipeline.

:func:`apply_objects` applies every rendered object with an owner reference to the
Pipeline (so deleting the Pipeline garbage-collects them) as the field manager
``killkrill-operator``, forcing conflicts: a field the spec declares is taken back from
whoever changed it (``kubectl edit`` of a replica count is undone). Fields the operator
does not render (e.g. ``spec.replicas`` when an HPA owns them) are left to their owner.
:func:`prune` deletes what the pipeline no longer has (the syslog Service once syslog is
turned off).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from killkrill.operator.kube import KubeClient
from killkrill.operator.render import FIELD_MANAGER, labels

__all__ = ["PRUNED_KINDS", "apply_objects", "owner_reference", "prune"]

PRUNED_KINDS = (
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    ("policy/v1", "PodDisruptionBudget"),
)
"""Kinds an older spec may have produced that a newer one does not."""


def owner_reference(owner: Mapping[str, Any]) -> dict[str, Any]:
    """The controller owner reference to ``owner`` (a Pipeline as the API returned it)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def apply_objects(
    client: KubeClient, objects: Iterable[Mapping[str, Any]], owner: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Server-side apply each object, owned by ``owner``; the objects as stored."""
    reference = owner_reference(owner)
    stored = []
    for obj in objects:
        owned = {**obj, "metadata": {**obj["metadata"], "ownerReferences": [reference]}}
        stored.append(client.apply(owned, field_manager=FIELD_MANAGER))
    return stored


def prune(
    client: KubeClient, namespace: str, pipeline: str, keep: Iterable[Mapping[str, Any]]
) -> list[str]:
    """Delete the pipeline's objects of :data:`PRUNED_KINDS` not in ``keep``; their
    ``kind/name``."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in keep}
    deleted = []
    for api_version, kind in PRUNED_KINDS:
        for obj in client.list(api_version, kind, namespace, labels=labels(pipeline)):
            name = obj["metadata"]["name"]
            if (kind, name) not in wanted and client.delete(api_version, kind, name, namespace):
                deleted.append(f"{kind}/{name}")
    return deleted
