"""A real kind cluster built here: ``killkrill dev kind image|up|down|status|env|load``.

* :mod:`.recipe`: what the node image is made of (pure);
* :mod:`.node_image`: its build on the project's Docker engine, cached by the recipe's hash;
* :mod:`.cluster`: the kind cluster from that image, its kubeconfig in the dev state dir.
"""
