"""Ray for a study and for `kdstudy rerun`: join a cluster or start a local one sized for the trials, and measure the
teacher in a Ray task with a worker's resources (on a GPU node when the workers have GPUs). How many trials run at a
time on the cluster, joined or started, is study.cluster.capacity's to say."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket

import ray
from ray._private import ray_constants, services

from study.cluster.capacity import local_trials
from study.config import StudyConfig, with_params
from study.errors import ConfigError
from study.experiment.evaluation import cached_teacher_metrics, teacher_metrics
from study.runtime import environment, error_line, fix_threads, quiet_libraries, root_cause, setup_worker_logging

log = logging.getLogger(__name__)

OBJECT_STORE_BYTES = 256 * 1024**2  # a local cluster moves configs and metrics, not data: keep the store small
SINGLE_MACHINE = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR  # "0": the node's address is the loopback one
CLUSTER_MODE = ray_constants.ENABLE_RAY_CLUSTER  # as this process found it when Ray was imported
CONNECT_TIMEOUT_S = 10  # a cluster's head that does not accept a connection in this long is not there


def start_ray(cfg: StudyConfig, address: str | None, log_to_driver: bool = True) -> bool:
    """Join a cluster, or start a local one sized for the study; True if this call started Ray. Without
    `log_to_driver` the workers' output stays in their log files (the live view's way)."""
    if ray.is_initialized():
        return False
    if address:
        check_answers(address)
        try:
            ray.init(address=address, log_to_driver=log_to_driver, logging_level="WARNING")
        except (ConnectionError, TimeoutError, ValueError) as err:
            raise ConfigError(f"--address {address}: no Ray cluster to join ({error_line(err)})") from None
        return True
    require_token()
    # One machine is not preempted: no watcher actor per Train run (its process start competes with the trials).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    s = cfg.search.scaling
    per_trial = s.trial_cpus + s.num_workers * s.cpus_per_worker
    # Logical CPUs: each trial holds its own process plus its workers (study.cluster.capacity counts them so).
    concurrent = local_trials(cfg.search)
    cpus = max(os.cpu_count() or 1, math.ceil(per_trial * concurrent))
    # The dashboard (on 127.0.0.1) serves the state API that Ray Train's placement-group cleaner polls.
    custom = {k: v * concurrent for k, v in s.trial_resources.items()}  # as a cluster's head
    port = free_port()
    gcs = f"127.0.0.1:{port}"
    # RAY_GCS_SERVER_PORT: Ray starts the head's GCS on it, so that its address is known before it starts
    with on_loopback(), environment({ray_constants.GCS_PORT_ENVIRONMENT_VARIABLE: str(port)}):
        # address "local": a new cluster of this study's own, never one that another study or a `ray start` on this
        # machine left in RAY_ADDRESS or /tmp/ray/ray_current_cluster (ray.init's default would join that one).
        # RAY_ADDRESS in the workers: Ray's own actors that look the cluster up (Ray Train's placement-group cleaner)
        # find this one, not "multiple active Ray instances" when another cluster runs on the machine.
        ray.init(address="local", num_cpus=cpus, resources=custom or None, object_store_memory=OBJECT_STORE_BYTES,
                 include_dashboard=True, logging_level="WARNING", log_to_driver=log_to_driver,
                 runtime_env={"env_vars": {ray_constants.RAY_ADDRESS_ENVIRONMENT_VARIABLE: gcs}})
    return True


def check_answers(address: str) -> None:
    """Something listens at the cluster address `address` (auto: $RAY_ADDRESS, as a Ray job has it, else the cluster
    last started on this machine; host:port; ray://host:port), checked in seconds: ray.init tries an address where
    nothing listens for minutes (its GCS client's 30 s wait, 20 times) before it gives up."""
    try:
        target = address[len("ray://"):] if address.startswith("ray://") else \
            services.canonicalize_bootstrap_address(address)  # as ray.init reads it (localhost: this node's IP)
        host, port = target.rsplit(":", 1)
        port = int(port)
    except (ConnectionError, ValueError) as err:  # auto, and no cluster to find; not host:port
        raise ConfigError(f"--address {address}: no Ray cluster to join ({error_line(err)})") from None
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise ConfigError(f"--address {address}: nothing answers at {target} ({err.strerror or err})") from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def on_loopback():
    """A local cluster started in this block listens on 127.0.0.1 only: Ray's single-machine mode, the one it uses on
    macOS and Windows (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 makes the node's address the loopback one, and every Ray
    process binds that address: gcs_server, raylets, workers, agents, dashboard, metrics). Without it Ray 2.60's
    gRPC servers listen on every interface whatever `_node_ip_address` says (measured here: `::` for gcs_server and
    the raylets, 0.0.0.0 for the agents and the metrics endpoints). The Ray processes read the variable when they
    start, this driver when Ray was imported (services.get_node_ip_address reads the module's constant); both are
    restored afterwards, so that a `ray start` of a real cluster from this process later is not single-machine."""
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        with environment({SINGLE_MACHINE: "0"}):
            yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = CLUSTER_MODE


def require_token() -> None:
    """Token authentication for the local cluster this process starts, with a token only this process and the Ray
    processes it starts know (they inherit the environment), generated once per process: the driver's Ray client
    caches the token it first read, so a second cluster in the same process must use the same one.

    Beside loopback binding (on_loopback), not instead: loopback keeps the network out, the token keeps out the other
    users and processes of this machine (a shared workstation), which can reach 127.0.0.1 too. The token is not
    written to ~/.ray/auth_token, where Ray would pick it up for every later cluster of the user's; a RAY_AUTH_TOKEN
    the user set is kept."""
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    # This process read RAY_AUTH_MODE when Ray was imported: read it again, as Ray's own enabling of token mode does
    # (ray._private.authentication.authentication_token_setup._enable_token_auth), and forget a token read before.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def on_device(cfg: StudyConfig, choice: str, cluster_gpus: float) -> StudyConfig:
    """cfg with one run's Ray Train workers on GPUs or not, as `--device` says: cpu: not; cuda: on GPUs, a usage
    error if the cluster has fewer than one run's workers need; auto: on GPUs when it has that many."""
    s = cfg.search.scaling
    need = s.num_workers * s.gpus_per_worker
    if choice == "cuda" and cluster_gpus < need:
        raise ConfigError(f"--device cuda: the Ray cluster has {cluster_gpus:g} GPU(s); one run's {s.num_workers} "
                          f"worker(s) need {need:g}")
    use_gpu = choice == "cuda" or choice == "auto" and cluster_gpus >= need
    log.info(f"workers on {'GPUs' if use_gpu else 'CPUs'} (--device {choice}; the cluster has {cluster_gpus:g} GPU(s))")
    return with_params(cfg, {"search.scaling.use_gpu": use_gpu})


@ray.remote
def measure_teacher(cfg: StudyConfig) -> dict[str, float]:
    """The teacher's metrics for a study (cached on disk, so a resumed study does not measure again)."""
    quiet_libraries()
    setup_worker_logging()
    fix_threads(cfg.threads)
    scalars, _ = teacher_metrics(cfg)
    return scalars


def teacher_metrics_task(cfg: StudyConfig) -> dict[str, float]:
    """The teacher's metrics measured in a Ray task with a worker's resources; a usage error inside it (a
    missing model or data file) comes out as itself, one line, not as Ray's traceback."""
    cached = cached_teacher_metrics(cfg)
    if cached is not None:  # measured before on this machine: no worker process to start just to read a file
        return cached[0]
    s = cfg.search.scaling
    task = measure_teacher.options(num_cpus=s.cpus_per_worker, num_gpus=s.worker_resources.get("GPU", 0))
    try:
        scalars = ray.get(task.remote(cfg))
    except ray.exceptions.RayTaskError as err:
        cause = root_cause(err)
        raise (cause if isinstance(cause, Exception) else err) from None
    shown = dict.fromkeys([cfg.bias.primary, "world/score", "glue/score"])
    log.info("teacher measured: " + ", ".join(f"{k} {scalars[k]:.4g}" for k in shown if k in scalars))
    return scalars
