"""How many trials a cluster holds at once (study.cluster.capacity), counted by hand on small clusters: each trial
holds its own process and its Ray Train workers, so a 2-CPU node holds one trial of a 1-CPU worker, not two."""

import logging

import pytest

from study.cluster.capacity import Capacity, adds_nodes, text, trials_at_once, unplaced
from study.config import ScalingConfig, SearchConfig
from study.errors import ConfigError
from tests.conftest import study_raw

SMOKE = ScalingConfig(num_workers=1, cpus_per_worker=1)  # search_spaces/smoke.yaml: its process takes a CPU too
PAPER = ScalingConfig(num_workers=4, use_gpu=True, cpus_per_worker=4, trial_cpus=0,
                      trial_resources={"kdstudy_trial": 1})  # search_spaces/paper.yaml
TWO_GPU_WORKERS = ScalingConfig(num_workers=2, use_gpu=True, cpus_per_worker=1, trial_resources={"kdstudy_trial": 1})
HEAD = {"CPU": 0.0, "kdstudy_trial": 8.0, "memory": 3e10, "node:10.0.0.1": 1.0}  # cluster.yaml's head
GPU_NODE = {"CPU": 8.0, "GPU": 1.0, "accelerator_type:A10G": 1.0}  # a g5.2xlarge


def search(scaling: ScalingConfig, wanted="auto") -> SearchConfig:
    return SearchConfig.model_validate({**study_raw()["search"], "max_concurrent_trials": wanted,
                                        "scaling": scaling.model_dump()})


@pytest.mark.parametrize("nodes, scaling, expected", [
    ([{"CPU": 2.0}], SMOKE, 1),  # process 1 + worker 1 = both CPUs
    ([{"CPU": 4.0}], SMOKE, 2),
    ([{"CPU": 5.0}], SMOKE, 2),  # the fifth CPU holds a process whose worker would find none
    ([{"CPU": 1.0}, {"CPU": 1.0}], SMOKE, 1),  # the process on one node, its worker on the other
    ([{"CPU": 2.0}], ScalingConfig(num_workers=1, cpus_per_worker=0.5, trial_cpus=0.5), 2),
    ([{"CPU": 4.0}], ScalingConfig(num_workers=2, cpus_per_worker=1), 1),  # 1 + 2 x 1 = 3 of 4 CPUs
    ([HEAD, GPU_NODE, GPU_NODE], PAPER, 0),  # 4 workers need 4 GPUs
    ([HEAD] + [GPU_NODE] * 4, PAPER, 1),  # a worker per GPU node (4 CPUs of 8 each, its one GPU)
    ([HEAD] + [GPU_NODE] * 8, PAPER, 2),
    ([HEAD] + [{"CPU": 64.0, "GPU": 8.0}] * 16, PAPER, 8),  # 32 trials' workers fit, the head 8 processes
    ([{"CPU": 64.0, "GPU": 8.0}] * 16, PAPER.model_copy(update={"trial_resources": {}}), 32),  # 2 per 8-GPU node
    # GPUs decide: the first trial takes CPU 1 + 2 x (CPU 1, GPU 1); the second's process fits, its workers find no GPU
    ([{"CPU": 16.0, "GPU": 2.0, "kdstudy_trial": 8.0}], TWO_GPU_WORKERS, 1),
    ([{"CPU": 16.0, "GPU": 4.0, "kdstudy_trial": 8.0}], TWO_GPU_WORKERS, 2),
    ([{"CPU": 16.0, "GPU": 2.0, "kdstudy_trial": 8.0}], TWO_GPU_WORKERS.model_copy(update={"gpus_per_worker": 0.5}),
     2),  # 2 workers x 0.5 GPU: a GPU per trial
    # a custom resource decides: each process holds a kdstudy_trial, the head has 2 of them, CPUs for 8 trials
    ([{"CPU": 16.0, "kdstudy_trial": 2.0}], SMOKE.model_copy(update={"trial_resources": {"kdstudy_trial": 1}}), 2),
    ([{"CPU": 16.0, "kdstudy_trial": 2.0}], SMOKE.model_copy(update={"trial_resources": {"kdstudy_trial": 0.5}}), 4),
    ([{"CPU": 16.0}], SMOKE.model_copy(update={"trial_resources": {"kdstudy_trial": 1}}), 0),  # no node declares it
    # processes on the head (CPU 0, kdstudy_trial 8), workers on a CPU node: 4 CPUs hold 4 workers
    ([HEAD, {"CPU": 4.0}], SMOKE.model_copy(update={"trial_cpus": 0, "trial_resources": {"kdstudy_trial": 1}}), 4),
])
def test_trials_that_fit_counted_by_hand(nodes, scaling, expected):
    assert Capacity(nodes, autoscaling=False).trials_that_fit(scaling) == expected


def test_a_fixed_cluster_runs_what_fits_and_caps_a_number_saying_so(caplog):
    two_cpus = Capacity([{"CPU": 2.0, "kdstudy_trial": 8.0}], autoscaling=False)
    assert trials_at_once(search(SMOKE), two_cpus) == 1
    with caplog.at_level(logging.WARNING, logger="study.cluster.capacity"):
        assert trials_at_once(search(SMOKE, wanted=2), two_cpus) == 1
    assert "max_concurrent_trials is 2, but the cluster (CPU 2, kdstudy_trial 8 on 1 node) holds 1" in caplog.text
    assert trials_at_once(search(SMOKE, wanted=1), Capacity([{"CPU": 8.0}], autoscaling=False)) == 1


def test_a_custom_resource_caps_the_trials_and_a_number_above_what_fits_is_capped():
    head = Capacity([{"CPU": 16.0, "kdstudy_trial": 3.0}], autoscaling=False)
    one_each = SMOKE.model_copy(update={"trial_resources": {"kdstudy_trial": 1}})
    assert trials_at_once(search(one_each), head) == 3  # CPUs for 8 trials, kdstudy_trial for 3
    assert trials_at_once(search(one_each, wanted=5), head) == 3
    assert trials_at_once(search(one_each, wanted=2), head) == 2  # a number below what fits is kept
    gpus = Capacity([{"CPU": 16.0, "GPU": 2.0, "kdstudy_trial": 8.0}], autoscaling=False)
    assert trials_at_once(search(TWO_GPU_WORKERS), gpus) == 1


def test_a_cluster_without_the_custom_resource_holds_no_trial_and_says_what_it_has():
    with pytest.raises(ConfigError) as err:
        trials_at_once(search(SMOKE.model_copy(update={"trial_resources": {"kdstudy_trial": 1}})),
                       Capacity([{"CPU": 2.0, "memory": 1e9}], autoscaling=False))
    assert str(err.value) == (
        "search.scaling: a trial holds its process CPU 1, kdstudy_trial 1 and 1 worker x CPU 1; the cluster has CPU 2 "
        "on 1 node, which holds not one, and no autoscaler adds nodes to it")


def test_a_fixed_cluster_that_holds_no_trial_is_one_line_naming_both_sides():
    with pytest.raises(ConfigError) as err:
        trials_at_once(search(PAPER, wanted=2), Capacity([HEAD, GPU_NODE], autoscaling=False))
    assert str(err.value) == (
        "search.scaling: a trial holds its process CPU 0, kdstudy_trial 1 and 4 workers x CPU 4, GPU 1; the cluster "
        "has CPU 8, GPU 1, kdstudy_trial 8 on 2 nodes, which holds not one, and no autoscaler adds nodes to it")


def test_an_autoscaling_cluster_waits_for_its_nodes_saying_so(caplog):
    head_only = Capacity([HEAD], autoscaling=True)  # cluster.yaml just after `ray up`: no GPU node yet
    with caplog.at_level(logging.INFO, logger="study.cluster.capacity"):
        assert trials_at_once(search(PAPER, wanted=2), head_only) == 2
        assert trials_at_once(search(PAPER), head_only) == 8  # auto: the head's kdstudy_trial admits 8 processes
    assert "the cluster has CPU 0, kdstudy_trial 8 on 1 node, which holds 0 now: 2 wait for the nodes its " \
           "autoscaler adds" in caplog.text
    assert trials_at_once(search(SMOKE), Capacity([{"CPU": 0.0}], autoscaling=True)) == 1  # at least one


def test_the_head_monitor_status_says_whether_nodes_can_be_added():
    def status(mapping):
        return {"autoscaler_report": {"node_type_mapping": mapping}}

    assert not adds_nodes(None) and not adds_nodes({"load_metrics_report": {}})
    assert not adds_nodes(status({"5fce51": "node_5fce51", "a0b1c2": "node_a0b1c2"}))  # `ray start`s: read-only
    assert adds_nodes(status({"5fce51": "head"}))  # `ray up` cluster.yaml: its node types
    assert adds_nodes(status({"5fce51": "head", "a0b1c2": "gpu_spot"}))


def test_what_a_person_reads_leaves_out_rays_own_resources():
    node = {"CPU": 2.0, "memory": 22302920192.0, "object_store_memory": 2e8, "node:127.0.0.1": 1.0,
            "node:__internal_head__": 1.0, "kdstudy_trial": 8.0, "GPU": 0.5, "accelerator_type:A10G": 1.0}
    assert text(node) == "CPU 2, GPU 0.5, kdstudy_trial 8"
    free = {"kdstudy_trial": 8.0, "memory": 1e9}  # as ray.available_resources() says it: no CPU left, so none listed
    line = unplaced(SMOKE, Capacity([node], autoscaling=False), free, 3, 60)
    assert line == ("its 1 Ray Train worker could not be placed (3 tries of 60 s): each needs CPU 1; the cluster has "
                    "CPU 2, GPU 0.5, kdstudy_trial 8 on 1 node, of which CPU 0 free")


@pytest.mark.slow  # a local Ray cluster and a Train run
@pytest.mark.usefixtures("no_ray_left_behind")
def test_workers_that_find_no_room_fail_the_trial_in_one_line(tiny_world, tmp_path, monkeypatch):
    """Something else holds the cluster's CPUs: the Train run's workers wait for room three times, then the trial fails
    with one line (saved beside its Train run, so a retry fails at once), not a timeout repeated every minute."""
    import ray

    from study.cluster.start import start_ray
    from study.cluster.train_run import TrialFailed, distill_and_evaluate, saved_result
    from study.load import parse_config
    from study.record import folder
    from tests.conftest import tiny_space

    monkeypatch.setenv("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "2")  # read by Train's controller, started below
    cfg = folder.resolve(parse_config(tiny_space(num_samples=1)), tmp_path / "study")
    assert start_ray(cfg, None)
    cpus = ray.cluster_resources()["CPU"]  # the machine's cores, at least one trial's process and its worker

    @ray.remote
    class Holder:
        def ready(self) -> bool:
            return True

    holder = Holder.options(num_cpus=cpus).remote()
    assert ray.get(holder.ready.remote())
    with pytest.raises(TrialFailed) as err:
        distill_and_evaluate(cfg, {}, "train-t")
    assert str(err.value) == (f"its 1 Ray Train worker could not be placed (3 tries of 2 s): each needs CPU 1; the "
                              f"cluster has CPU {cpus:g} on 1 node, of which CPU 0 free")
    assert saved_result(cfg, "train-t") == {"failure": str(err.value)}
