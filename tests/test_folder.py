"""The study folder: one driver per study (a lock with the holder's pid and host), readers without a lock."""

import json
import logging
import os
import signal
import subprocess
import sys

import pytest
import yaml

from study.cli import main
from study.load import parse_config
from study.record import folder
from tests.conftest import tiny_space

HOLD = """
import sys, time
from pathlib import Path
from study.record import folder
with folder.hold(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(300)
"""


def _holder(directory) -> subprocess.Popen:
    """Another driver: a real second process holding the study's lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.stdout.readline().strip() == "holding"
    return proc


@pytest.fixture
def study(tmp_path):
    """A study folder as `kdstudy run` leaves it before its first trial ends: meta, config, MLflow parent."""
    raw = tiny_space(num_samples=1)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    cfg = folder.resolve(parse_config(raw), tmp_path / "study")
    with folder.hold(tmp_path / "study"):
        folder.create(cfg, {"bias/template/planted_slope": 1.0, "world/score": 50.0})
    return space, tmp_path / "study"


def test_a_second_driver_is_refused_naming_the_holder_readers_still_work(study, capsys):
    space, directory = study
    proc = _holder(directory)
    try:
        for argv in (["run", str(space), "--study-dir", str(directory), "--resume"],
                     ["run", str(space), "--study-dir", str(directory)]):
            assert main(argv) == 2
            err = capsys.readouterr().err.strip()
            assert "\n" not in err and "another driver runs this study" in err
            assert f"pid {proc.pid} on {os.uname().nodename}" in err
        assert main(["pareto", str(directory), "--json"]) == 0  # reading takes no lock
        assert json.loads(capsys.readouterr().out)["front"] == []
        assert json.loads((directory / folder.LOCK).read_text())["pid"] == proc.pid  # refused, untouched
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_dead_driver_is_taken_over(study, caplog):
    _, directory = study
    proc = _holder(directory)
    os.kill(proc.pid, signal.SIGKILL)  # as a crash would: no chance to release it
    proc.wait()
    assert (directory / folder.LOCK).is_file()
    with caplog.at_level(logging.WARNING, logger="study.record.folder"), folder.hold(directory):
        assert json.loads((directory / folder.LOCK).read_text())["pid"] == os.getpid()
    assert f"pid {proc.pid}" in caplog.text and "is gone" in caplog.text and "takes over" in caplog.text
    assert not (directory / folder.LOCK).exists()  # released on the way out
    assert (directory / folder.META).is_file()  # and the study is untouched


def test_a_new_study_being_started_is_held_too_and_a_failed_start_leaves_nothing(tmp_path, capsys):
    directory = tmp_path / "fresh"
    proc = _holder(directory)  # a first driver, still measuring its teacher: no study.json yet
    try:
        space = tmp_path / "space.yaml"
        space.write_text(yaml.safe_dump(tiny_space(num_samples=1)))
        assert main(["run", str(space), "--study-dir", str(directory)]) == 2
        assert f"pid {proc.pid}" in capsys.readouterr().err
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(RuntimeError), folder.hold(directory):  # a start that fails before a study is recorded
        (directory / folder.TEACHER).write_text("{}")
        raise RuntimeError("the teacher could not be measured")
    assert not directory.exists()
