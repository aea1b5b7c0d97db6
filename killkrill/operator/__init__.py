"""The operator: ``Pipeline`` custom resources reconciled into running pipelines (kopf).

* :mod:`~killkrill.operator.render` - spec -> objects (pure);
* :mod:`~killkrill.operator.apply` - server-side apply, owner references, pruning;
* :mod:`~killkrill.operator.reconcile` - one reconcile: read, decide, render, apply, status;
* :mod:`~killkrill.operator.status` - conditions derived from what was observed (pure);
* :mod:`~killkrill.operator.autoscale` - worker replicas from the lag (pure);
* :mod:`~killkrill.operator.handlers` - the kopf handlers, thin;
* :mod:`~killkrill.operator.kube` - a small Kubernetes API client;
* :mod:`~killkrill.operator.run` - ``killkrill operator``.
"""
