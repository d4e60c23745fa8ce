"""How many trials a Ray cluster holds at once, counted from its nodes' resources.

A trial holds two things while it runs: its own process (Tune's trainable, where Ray Train's controller lives;
search.scaling.trial_cpus and trial_resources) and its Ray Train workers (num_workers x cpus_per_worker, and
gpus_per_worker with use_gpu). A 2-CPU node holds one trial of one 1-CPU worker, not two: two trial processes would
take both CPUs, and their workers would wait for one until Ray Train's worker-group start timed out, again every
minute. A seed run of `kdstudy rerun` or of the confirm stage is counted as a trial (its task stands for the process).

    local_trials(search)         the trials at a time of the local cluster a study starts (study.cluster.start)
    Capacity.of_cluster()        the live nodes' resources and whether an autoscaler can add nodes (Ray must be up)
    Capacity.trials_that_fit     how many trials the nodes hold side by side
    adds_nodes(status)           whether the head's monitor is an autoscaler that adds nodes
    trials_at_once(search, cap)  the trials (or seed runs) to run at a time there, or a one-line ConfigError
    unplaced(scaling, cap)       the one line of a trial whose workers could not be placed

Worked example, the job-submission test's head (CPU 2, kdstudy_trial 8) and smoke.yaml (trial_cpus 1, one worker of
1 CPU): the first trial's process takes a CPU, its worker the other; the second trial finds no CPU: 1 at a time.
cluster.yaml's head (CPU 0, kdstudy_trial 8) with search_spaces/paper.yaml (trial_cpus 0, kdstudy_trial 1, four
workers of 4 CPUs and a GPU): no trial fits until the autoscaler adds GPU nodes, and 8 processes fit on the head.
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass

from study.config import ScalingConfig, SearchConfig
from study.errors import ConfigError

log = logging.getLogger(__name__)

Resources = dict[str, float]
SHOWN = ("CPU", "GPU")  # then the custom resources; Ray's own (memory, node:<ip>, accelerator_type:...) are left out
INTERNAL = ("memory", "object_store_memory", "node:", "accelerator_type:")
EPSILON = 1e-9  # fractional resources (0.5 CPU) summed in floats


def local_trials(search: SearchConfig, cpus: int | None = None) -> int:
    """The trials at a time the local cluster a study starts is sized for: max_concurrent_trials, with auto as the
    machine's cores over one trial's workers' CPUs (at least 1). The trial's own process waits on its workers, so it
    is not counted against a core; the local cluster gives it a logical CPU of its own beside them."""
    if search.max_concurrent_trials != "auto":
        return search.max_concurrent_trials
    s = search.scaling
    return max(1, int((cpus or os.cpu_count() or 1) // (s.num_workers * s.cpus_per_worker)))


def process_bundle(scaling: ScalingConfig) -> Resources:
    """What a trial's own process holds."""
    return {"CPU": scaling.trial_cpus, **scaling.trial_resources}


def _fits(free: Resources, bundle: Resources) -> bool:
    return all(free.get(k, 0.0) + EPSILON >= v for k, v in bundle.items() if v > 0)


def _take(free: Resources, bundle: Resources) -> None:
    for k, v in bundle.items():
        free[k] = free.get(k, 0.0) - v


def text(resources: Resources) -> str:
    """`CPU 2, GPU 1, kdstudy_trial 8`: the resources a person asks for, without Ray's bookkeeping ones."""
    names = [k for k in SHOWN if k in resources] + sorted(k for k in resources
                                                          if k not in SHOWN and not k.startswith(INTERNAL))
    return ", ".join(f"{k} {resources[k]:g}" for k in names) or "nothing"


def demand_text(scaling: ScalingConfig) -> str:
    """`its process CPU 1 and 1 worker x CPU 1`: what one trial holds."""
    workers = f"{scaling.num_workers} worker{'s' if scaling.num_workers > 1 else ''}"
    return f"its process {text(process_bundle(scaling))} and {workers} x {text(scaling.worker_resources)}"


@dataclass
class Capacity:
    nodes: list[Resources]  # each live node's total resources
    autoscaling: bool  # an autoscaler can add nodes

    @classmethod
    def of_cluster(cls) -> Capacity:
        import ray

        return cls([dict(n["Resources"]) for n in ray.nodes() if n["Alive"]], _autoscaling())

    def total(self) -> Resources:
        out: Resources = {}
        for node in self.nodes:
            for k, v in node.items():
                out[k] = out.get(k, 0.0) + v
        return out

    def describe(self) -> str:
        return f"{text(self.total())} on {len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''}"

    def trials_that_fit(self, scaling: ScalingConfig) -> int:
        """How many trials the nodes hold side by side, placed one after another: each trial's process, then each
        of its workers, on the first node with room for it (first fit; Ray Train's PACK placement keeps a trial's
        workers together where it can, and a cluster that holds n trials this way holds them)."""
        free = [dict(n) for n in self.nodes]
        bundles = [process_bundle(scaling)] + [scaling.worker_resources] * scaling.num_workers
        count = 0
        while True:
            for bundle in bundles:
                node = next((f for f in free if _fits(f, bundle)), None)
                if node is None:
                    return count
                _take(node, bundle)
            count += 1

    def process_cap(self, scaling: ScalingConfig) -> int | None:
        """How many trial processes the custom resources they ask for admit (cluster.yaml's kdstudy_trial: 8 on the
        head), None when they ask for none."""
        total = self.total()
        caps = [math.floor(total.get(k, 0.0) / v + EPSILON) for k, v in scaling.trial_resources.items() if v > 0]
        return min(caps) if caps else None


def _autoscaling() -> bool:
    """Whether an autoscaler can add nodes to the cluster Ray is connected to: from the status the head's monitor
    keeps for `ray status` (Ray's internal key __autoscaling_status; adds_nodes), or, under autoscaler v2 (KubeRay),
    from the node groups it keeps in the GCS."""
    import ray
    from ray._private import ray_constants
    from ray.experimental.internal_kv import _internal_kv_get

    try:  # Ray's internals: a cluster whose status cannot be read is taken as one of fixed size
        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        return adds_nodes(json.loads(raw) if raw else None) or ray._private.state.state.get_cluster_config() is not None
    except Exception:
        return False


def adds_nodes(status: dict | None) -> bool:
    """Whether the monitor's status (as `ray status` reads it) is an autoscaler's that can add nodes. Under `ray up`
    the nodes' types are the cluster config's (head, gpu, ...); a cluster of plain `ray start`s has a read-only
    monitor that names each node's type after the node (node_<id>) and never adds one."""
    report = (status or {}).get("autoscaler_report") or {}
    return any(kind != f"node_{node}" for node, kind in (report.get("node_type_mapping") or {}).items())


def trials_at_once(search: SearchConfig, cap: Capacity) -> int:
    """How many trials (or seed runs) to run at a time on the cluster `cap` describes: search.max_concurrent_trials,
    `auto` being as many as fit, and a number capped at that (more would hold the CPUs their workers wait for).

    Where an autoscaler can add nodes, what fits now is no limit: `auto` is as many trial processes as their custom
    resources admit (kdstudy_trial), else what fits now (at least 1), and the trials that do not fit wait for the
    nodes it adds. Where none can and not one trial fits, a ConfigError names what a trial holds and what the
    cluster has."""
    scaling, wanted = search.scaling, search.max_concurrent_trials
    fits = cap.trials_that_fit(scaling)
    if cap.autoscaling:
        at_once = wanted if wanted != "auto" else max(1, fits, cap.process_cap(scaling) or 0)
        if fits < at_once:
            log.info(f"{at_once} trial(s) at a time, each holding {demand_text(scaling)}; the cluster has "
                     f"{cap.describe()}, which holds {fits} now: {at_once - fits} wait for the nodes its autoscaler "
                     f"adds")
        return at_once
    if fits == 0:
        raise ConfigError(f"search.scaling: a trial holds {demand_text(scaling)}; the cluster has {cap.describe()}, "
                          f"which holds not one, and no autoscaler adds nodes to it")
    if wanted != "auto" and wanted > fits:
        log.warning(f"search.max_concurrent_trials is {wanted}, but the cluster ({cap.describe()}) holds {fits} "
                    f"trial(s) at a time, each holding {demand_text(scaling)}: running {fits} at a time")
    return fits if wanted == "auto" else min(wanted, fits)


def unplaced(scaling: ScalingConfig, cap: Capacity, available: Resources, tries: int, seconds: float) -> str:
    """Why a trial failed whose Ray Train workers found no room, in one line. `available`: what is free in the
    cluster as Ray says it (ray.available_resources(), which leaves out what is at 0)."""
    workers = f"{scaling.num_workers} Ray Train worker{'s' if scaling.num_workers > 1 else ''}"
    free = {k: available.get(k, 0.0) for k in scaling.worker_resources}
    return (f"its {workers} could not be placed ({tries} tries of {seconds:g} s): each needs "
            f"{text(scaling.worker_resources)}; the cluster has {cap.describe()}, of which {text(free)} free")
