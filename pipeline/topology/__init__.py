"""Topic definitions loaded from ``topics/``, compared with a cluster and applied to it.

``topics/`` is the single source of truth for topics: one YAML file per topic. The parts:

- :mod:`.definitions`: what a topic definition is (:class:`TopicDefinition`) and the set
  of them (:class:`Topology`);
- :mod:`.loader`: :func:`load_topology` reads and validates the files strictly and
  enforces co-partitioning (every ``conversation`` topic and every ``co_partitioned``
  changelog has the same partition count, so one conversation's events land on the same
  partition number everywhere);
- :mod:`.drift`: what differs between the definitions and a cluster (:class:`Plan`);
- :mod:`.admin`: the Admin API calls. Against a cluster, :func:`plan` lists the drifts;
  :func:`apply` fixes the safe ones (create missing topics, add partitions, set configs)
  and refuses, before changing anything, to shrink partitions or change
  ``cleanup.policy``; :func:`check` only reports.
"""

from pipeline.topology.admin import DEFAULT_TIMEOUT_SECONDS, admin_client, apply, check, plan
from pipeline.topology.definitions import TopicDefinition, TopicKind, Topology
from pipeline.topology.drift import ClusterState, Drift, DriftKind, Plan, compare
from pipeline.topology.loader import load_settings_topology, load_topology

__all__ = [
    "DEFAULT_TIMEOUT_SECONDS",
    "ClusterState",
    "Drift",
    "DriftKind",
    "Plan",
    "TopicDefinition",
    "TopicKind",
    "Topology",
    "admin_client",
    "apply",
    "check",
    "compare",
    "load_settings_topology",
    "load_topology",
    "plan",
]
