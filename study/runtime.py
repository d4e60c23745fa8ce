"""What every entry point needs around the science: logging, the console, quiet libraries, the cache root, the config
snapshot with its git commit, and a Ray error's own cause.

Library modules log through `logging.getLogger(__name__)` and never choose a handler; the CLI calls
`setup_logging` once (a rich handler on stderr, `-v` for debug, `-q` for warnings only), and a Ray worker calls
`setup_worker_logging` with the driver's level, so the worker's lines reach the driver's terminal through Ray's
log forwarding.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import subprocess
import sys
from pathlib import Path

LOGGER = "study"  # the root of every kdstudy logger (study.world, study.metrics.glue, ...)
LIBRARIES = ("optuna", "mlflow", "ray", "alembic", "urllib3", "filelock")  # the libraries' loggers on the driver
WORKER_LEVEL = "KDSTUDY_LOG_LEVEL"  # how the driver's level reaches Ray workers (an environment variable)


@functools.cache
def console():
    """The console for kdstudy's own messages: stderr (stdout carries tables and JSON), long paths never wrapped.
    One for the process: the live view (study.search.watch) draws on it, and a log line printed while it is up must
    go through it too, to be placed above the view instead of into it."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def setup_logging(verbosity: int = 0) -> None:
    """One rich handler on stderr for kdstudy's loggers: INFO by default, DEBUG with -v, WARNING with -q."""
    level = logging.DEBUG if verbosity > 0 else logging.WARNING if verbosity < 0 else logging.INFO
    handler = _line_handler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    _install(handler, level)
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    os.environ[WORKER_LEVEL] = logging.getLevelName(level)  # inherited by the Ray workers this process starts


def _line_handler() -> logging.Handler:
    """rich's handler printing each message as one line: no time/level/path columns, whose table would wrap a long
    path into pieces; a warning says so in front."""
    from rich.logging import RichHandler
    from rich.text import Text

    class LineHandler(RichHandler):
        def render(self, *, record, traceback, message_renderable):
            if record.levelno >= logging.WARNING:
                return Text.assemble((f"{record.levelname.lower()}: ", "bold yellow"), message_renderable)
            return message_renderable

    return LineHandler(console=console(), markup=False, rich_tracebacks=False)


def setup_worker_logging(log_file: Path | None = None) -> None:
    """In a Ray worker: kdstudy's lines as plain text on stderr, which Ray forwards to the driver's terminal, and
    appended to `log_file` if given (a trial's own log in its study folder)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _install(handler, os.environ.get(WORKER_LEVEL, "INFO"))
    if log_file is not None:
        try:
            Path(log_file).parent.mkdir(parents=True, exist_ok=True)
            to_file = logging.FileHandler(log_file)
        except OSError:  # a worker on a node without the study folder: its lines still reach Ray's own logs
            return
        to_file.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logging.getLogger(LOGGER).addHandler(to_file)


def _install(handler: logging.Handler, level: int | str) -> None:
    root = logging.getLogger(LOGGER)
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False  # Ray and pytest configure the root logger; our lines go through our handler once


@contextlib.contextmanager
def libraries_to_file(path: Path):
    """The libraries' log lines (LIBRARIES: Optuna's "A new study created", MLflow's, Ray's and Tune's) go to `path`
    instead of the screen while the block runs; their loggers are as they were afterwards."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = {}
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        saved[name] = (list(logger.handlers), logger.propagate)
        for old in list(logger.handlers):  # a stream handler writes to the screen (Optuna's own, Ray's)
            if isinstance(old, logging.StreamHandler) and not isinstance(old, logging.FileHandler):
                logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield path
    finally:
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        handler.close()


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """os.environ with `values` set in this block, and as it was afterwards (a variable that was unset is unset)."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def quiet_libraries() -> None:
    """Keep transformers', datasets' and the hub's progress bars and retries out of kdstudy's own output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import huggingface_hub
    import transformers

    huggingface_hub.utils.logging.set_verbosity_error()  # offline retries would print a line per attempt
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."


def fix_threads(threads: int) -> None:
    """torch's CPU threads for this process (StudyConfig.threads says why one count everywhere)."""
    import torch

    torch.set_num_threads(threads)


def cache_root() -> Path:
    """Where kdstudy keeps what it builds or downloads once (the world, teachers' metrics, bias data):
    $KDSTUDY_CACHE, else ~/.cache/kdstudy."""
    return Path(os.environ.get("KDSTUDY_CACHE", Path.home() / ".cache" / "kdstudy")).expanduser()


def git_commit() -> str | None:
    """The commit this checkout is at, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def write_snapshot(path: Path, cfg) -> Path:
    """The resolved config as YAML with the git commit it runs at: what `kdstudy distill` and a study record."""
    import yaml

    path.write_text(yaml.safe_dump({**cfg.model_dump(mode="json"), "git_commit": git_commit()}, sort_keys=False))
    return path


def root_cause(err: BaseException) -> BaseException:
    """The user's own exception inside Ray's wrappers: a Train run's first worker failure, a task error's cause."""
    failures = getattr(err, "worker_failures", None) or {}
    inner = next(iter(failures.values()), None) or getattr(err, "controller_failure", None) or err
    cause = getattr(inner, "cause", None)
    return cause if isinstance(cause, BaseException) else inner


def error_line(err: BaseException) -> str:
    """`Type: first line of the message` of an exception's root cause: a failure reason that fits a table cell."""
    cause = root_cause(err)
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
