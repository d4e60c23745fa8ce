"""The local Ray cluster a study starts: reachable from this machine only, and only with its token."""

import ipaddress
import os

import grpc
import psutil
import pytest

from study.cluster.start import start_ray
from study.load import parse_config
from tests.conftest import tiny_space

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_ray_left_behind")]  # a real local Ray cluster


def _listening(pids: set[int]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket of the processes `pids`."""
    found = []
    for c in psutil.net_connections(kind="inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in pids:
            found.append((c.laddr.ip, c.laddr.port, psutil.Process(c.pid).name()))
    return found


def _loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def test_local_ray_listens_on_loopback_only_and_wants_its_token(tiny_world, monkeypatch):
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # as the test suite runs: start_ray turns the token on anyway
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    cfg = parse_config(tiny_space(num_samples=1))
    assert start_ray(cfg, None)

    @ray.remote(num_cpus=1)
    def hello() -> int:
        return os.getpid()

    worker = ray.get(hello.remote())  # a worker process started and ran a task
    me = psutil.Process()
    pids = {p.pid for p in [me, *me.children(recursive=True)]}
    assert worker in pids
    sockets = _listening(pids)
    names = {name for _, _, name in sockets}
    assert {"gcs_server", "raylet"} <= names and len(sockets) >= 5  # Ray's servers were found
    assert [s for s in sockets if not _loopback(s[0])] == []

    # The GCS refuses a request without the cluster's token, or with another one, and answers one with it.
    gcs = ray._private.worker.global_worker.node.gcs_address
    method = "/ray.rpc.NodeInfoGcsService/GetClusterId"  # an empty request is a valid one
    answers = []
    for token in (None, "not-the-token", os.environ["RAY_AUTH_TOKEN"]):
        with grpc.insecure_channel(gcs) as channel:
            try:
                channel.unary_unary(method)(b"", timeout=10,
                                            metadata=(("authorization", f"Bearer {token}"),) if token else None)
                answers.append("ok")
            except grpc.RpcError as err:
                answers.append(err.code().name)
    assert answers == ["UNAUTHENTICATED", "UNAUTHENTICATED", "ok"]
    assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # restored: a later `ray start` is a cluster


def test_ray_s_own_lookups_in_a_worker_find_the_study_s_cluster(tiny_world, monkeypatch):
    """With another Ray cluster on the machine, Ray's auto-detection (what Ray Train's placement-group cleaner calls)
    fails with "multiple active Ray instances" unless RAY_ADDRESS names one: a local study's workers have its own."""
    import ray
    from ray._private.services import canonicalize_bootstrap_address_or_die

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert start_ray(parse_config(tiny_space(num_samples=1)), None)
    gcs = ray._private.worker.global_worker.node.gcs_address

    @ray.remote(num_cpus=1)
    def found() -> str:
        return canonicalize_bootstrap_address_or_die(None)

    assert ray.get(found.remote()) == gcs
    assert os.environ.get("RAY_GCS_SERVER_PORT") is None  # restored: a later `ray start` picks its own port
