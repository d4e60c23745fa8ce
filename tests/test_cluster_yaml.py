"""cluster.yaml against Ray's own schema, as `ray up` checks it before it contacts the cloud."""

import copy
import re

import jsonschema
import pytest
import tomllib
import yaml
from packaging.requirements import Requirement


def _ray_up_checks(config: dict) -> None:
    """What `ray up` does to a cluster config before it contacts the cloud: fill defaults, validate the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_passes_rays_schema():
    config = yaml.safe_load(open("cluster.yaml"))
    _ray_up_checks(config)
    assert config["provider"]["type"] == "aws"
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]["resources"]
    assert head["CPU"] == 0  # no distillation on the head
    # the trials' own processes go where the paper study asks: a resource only the head (never preempted) declares
    wanted = yaml.safe_load(open("search_spaces/paper.yaml"))["search"]["scaling"]["trial_resources"]
    assert wanted and all(head.get(k, 0) >= v for k, v in wanted.items())
    assert not any(k in nodes[n]["resources"] for k in wanted for n in nodes if n != config["head_node_type"])
    assert nodes["gpu_spot"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    starts = " ".join(config["head_start_ray_commands"])
    assert "--host 127.0.0.1" in starts and "--dashboard-host=127.0.0.1" in starts  # nothing public
    # the nodes install a Ray this project accepts (driver and cluster must run the same Ray)
    pinned = re.search(r"ray\[[a-z,]+\]==([0-9.]+)", " ".join(config["setup_commands"])).group(1)
    with open("pyproject.toml", "rb") as f:
        wanted = [Requirement(r) for r in tomllib.load(f)["project"]["dependencies"] if r.startswith("ray")]
    assert wanted and all(r.specifier.contains(pinned) for r in wanted)
    # the nodes fetch the bias data themselves: nothing is mounted from beside the checkout
    assert list(config["file_mounts"].values()) == ["."]
    assert "kdstudy data fetch all" in config["worker_setup_commands"]
    # and the schema does catch a broken node type
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu"]["node_confg"] = broken["available_node_types"]["gpu"].pop("node_config")
    with pytest.raises(jsonschema.ValidationError):
        _ray_up_checks(broken)
