"""Shared fixtures: a tiny world built once per test session in a temporary cache."""

import os
from pathlib import Path

import pytest
import yaml

from study.metrics.bias_data import BENCHMARKS, NEEDED, default_dir

# A world small enough to build in seconds; the science checks use the full world in benchmarks/.
TINY_WORLD = {"sentences": 2000, "vocab_size": 600, "layers": 2, "hidden": 32, "heads": 2, "intermediate": 64,
              "max_length": 24, "batch_size": 64, "min_epochs": 1, "max_epochs": 2, "target_spearman": 0.99}


def tiny_study(**distill) -> dict:
    return {
        "name": "tiny",
        "world": TINY_WORLD,
        "student": {"n_layers": 1},
        "distill": {"steps": 6, "batch_size": 8, "max_length": 24, "log_every": 2, **distill},
        "bias": {"template": {"templates": ["{target} is {a} {occupation} .", "{target} works as {a} {occupation} ."]}},
    }


# Tests of the released benchmark files use the fetched copy (`kdstudy data fetch`) or ../shared/data beside the
# checkout; without either they are skipped, naming the command. KDSTUDY_REQUIRE_DATA=1 (CI, which has the folder)
# turns that skip into a failure, so that a missing copy cannot pass unnoticed.
REQUIRE_DATA = "KDSTUDY_REQUIRE_DATA"
FETCH = "kdstudy data fetch crows seat"


def _released_data() -> Path | None:
    for folder in (default_dir(), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if all((folder / s.path).is_file() for name in NEEDED for s in BENCHMARKS[name].files):
            return folder
    return None


RELEASED = _released_data()  # found before the session's cache fixture points KDSTUDY_CACHE elsewhere


@pytest.fixture(scope="session")
def released_data() -> Path:
    """The folder holding the released CrowS-Pairs and SEAT files."""
    if RELEASED is None:
        reason = f"needs the released CrowS-Pairs and SEAT files: run `{FETCH}`"
        if os.environ.get(REQUIRE_DATA) == "1":
            pytest.fail(f"{reason} ({REQUIRE_DATA}=1 forbids skipping)")
        pytest.skip(reason)
    return RELEASED


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("kdstudy-cache")
    old = os.environ.get("KDSTUDY_CACHE")
    os.environ["KDSTUDY_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("KDSTUDY_CACHE", None)
    else:
        os.environ["KDSTUDY_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_world(cache_dir):
    from study.config import WorldConfig
    from study.world.build import build_world

    return build_world(WorldConfig(**TINY_WORLD))


@pytest.fixture(scope="session")
def world_models(tiny_world):
    """(teacher, tokenizer, corpus ids) of the tiny world."""
    from study.distill.data import tokenize
    from study.distill.models import load_masked_lm

    teacher, tokenizer = load_masked_lm(tiny_world.teacher_dir)
    return teacher, tokenizer, tokenize(tiny_world.sentences, tokenizer, 24)


@pytest.fixture
def study_yaml(tmp_path):
    def write(**distill):
        path = tmp_path / "study.yaml"
        path.write_text(yaml.safe_dump(tiny_study(**distill)))
        return path

    return write
