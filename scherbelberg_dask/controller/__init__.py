"""The controller of an autonomous cluster: adapts and deletes it from its scheduler node.

An autonomous cluster (``HetznerCluster(..., autonomous=True)``) runs this package as a
service on its scheduler node, under a system user of its own (docs/autonomous.md):

- :mod:`.spec`: what the controller is told (``controller.json``) and what it keeps
  across its restarts (``state.json``);
- :mod:`.probe`: what it asks the scheduler (work, clients) and the directives and
  status it exchanges with clients through the scheduler's metadata;
- :mod:`.service`: the service itself (``python -m scherbelberg_dask.controller.service``);
- :mod:`.teardown`: deleting the whole cluster, its own server last;
- :mod:`.install`: what the client ships to the scheduler node (our own code, the
  cluster's local state, the token) and how;
- :mod:`.handoff`: the client's side of "one adaptive loop at a time".
"""
