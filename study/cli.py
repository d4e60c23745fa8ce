"""The `kdstudy` command.

    kdstudy world build [CONFIG] [--set key=value ...] [--out DIR]
    kdstudy distill CONFIG [--set key=value ...] [--out DIR] [--device auto|cpu|cuda|cuda:N]
    kdstudy bias MODEL [--config CONFIG] [--out FILE] [--device ...]
    kdstudy eval MODEL [--glue TASKS] [--world] [--bias METRICS] [--data-dir DIR] [--out FILE] [--device ...]
    kdstudy data fetch [crows|seat|stereoset|all ...] [--to DIR]
    kdstudy run SPACE.yaml [--set key=value ...] [--study-dir DIR] [--address auto|ray://...]
                [--resume [--from STORAGE]] [--dry-run]
    kdstudy pull STORAGE DIR
    kdstudy pareto STUDY_DIR [--json] [--importance]
    kdstudy rerun STUDY_DIR [--pick recommended|knee|min:<metric>|max:<metric>|trial:<id>] [--seeds N] [--full]
                [--device auto|cpu|cuda]
    kdstudy export STUDY_DIR [--pick ...] [--to DIR] [--push-to-hub USER/REPO]

Usage errors (a bad config, a missing file, a model without an MLM head) print one line and exit 2. The commands that
compute take --device (study.device): auto, the default, is the GPU when there is one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from study.errors import USAGE_ERRORS, ConfigError, Diverged, TrackingUnavailable
from study.runtime import fix_threads, quiet_libraries, setup_logging

if TYPE_CHECKING:
    from study.config import StudyConfig

log = logging.getLogger("study.cli")


# Heavy libraries (torch, transformers, ray, mlflow, optuna, datasets) and the config's pydantic models are imported
# inside the commands that use them, so that `kdstudy --help` and a usage error answer at once.


def _config(path: str | None, overrides: list[str]) -> StudyConfig:
    from study.load import apply_overrides, load_config, parse_config

    return load_config(path, overrides) if path else parse_config(apply_overrides({}, overrides), "--set")


def _metrics_table(title: str, rows: list[tuple[str, object, object]]):
    from rich.table import Table

    table = Table(title=title)
    for name in ("metric", "teacher", "student"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for name, t, s in rows:
        table.add_row(name, *(f"{v:.4f}" if isinstance(v, float) else str(v) for v in (t, s)))
    return table


def _report(title: str, metrics: dict[str, float], out: str | None, device: str) -> int:
    """Print metrics as a table; write them as one flat JSON object to `out` if given, with the device they were
    computed on."""
    from rich.table import Table

    from analysis.report import table_console
    from study.device import DEVICE_TAG

    table = Table(title=title, caption=f"on {device}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}")
    table_console().print(table)
    if out:
        Path(out).write_text(json.dumps({**metrics, DEVICE_TAG: device}, indent=2))
        log.info(f"metrics: {out}")
    return 0


def _device(choice: str):
    """The torch.device --device names (a usage error if this machine has none such)."""
    from study.device import resolve_device

    return resolve_device(choice)


def cmd_world_build(args) -> int:
    cfg = _config(args.config, args.set)
    quiet_libraries()
    fix_threads(cfg.threads)
    from study.world.build import build_world

    out = Path(args.out) if args.out else None
    # a world is written into a new folder by renaming: a file, or a folder holding something else, is in the way
    if out is not None and out.exists() and not (out / "world.json").is_file() and \
            (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: neither a world's folder nor a new or empty one")
    world = build_world(cfg.world, out)
    info = world.info
    log.info(f"world {info['key']} at {world.root}")
    log.info(f"  corpus      {world.root / 'corpus.txt'}: {info['sentences']} sentences, "
                  f"{info['word_types']} word types, sha256 {info['corpus_sha256'][:16]}")
    log.info(f"  teacher     {world.teacher_dir}: BertForMaskedLM {cfg.world.layers}x{cfg.world.hidden}, "
                  f"{info['teacher_parameters'] / 1e6:.2f}M parameters, vocabulary {info['vocab_size']}")
    last = info["pretraining"][-1]
    log.info(f"  pretraining {last['epoch']} epochs, mlm loss {last['mlm_loss']:.3f}, "
                  f"planted Spearman {last['planted_spearman']:.3f}, built in {info['build_seconds']:.0f}s")
    log.info(f"  shares      {len(world.shares)} occupations, in {world.root / 'world.json'}")
    return 0


def cmd_distill(args) -> int:
    cfg = _config(args.config, args.set)
    quiet_libraries()
    fix_threads(cfg.threads)
    from analysis.report import table_console
    from study.experiment.pipeline import run_distillation

    device = _device(args.device)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-distill"  # runs/<name> is the study's
    metrics = run_distillation(cfg, out, device)
    keys = [metrics["bias/primary"], "bias/template/abs_mean", "bias/template/spread",
            "bias/template/planted_spearman", "bias/template/planted_slope", "bias/template/majority_skew",
            "world/score", "glue/score"]
    rows = [(k, metrics[f"teacher/{k}"], metrics[k]) for k in dict.fromkeys(keys) if k in metrics]
    rows += [("bias/amplification", "", metrics["bias/amplification"]),
             ("perf/tokens_per_s", "", metrics["perf/tokens_per_s"])]
    table_console().print(_metrics_table(f"{cfg.name}: mitigation {cfg.distill.mitigation.mode}, on "
                                         f"{metrics['device']}", rows))
    log.info(f"student: {out / 'student'}   metrics: {out / 'metrics.json'}")
    return 0


def cmd_bias(args) -> int:
    cfg = _config(args.config, [])
    quiet_libraries()
    fix_threads(cfg.threads)
    from study.device import describe
    from study.distill.models import load_masked_lm
    from study.metrics import bias

    device = _device(args.device)
    model, tokenizer = load_masked_lm(args.model)
    scalars, _ = bias.measure(model.to(device), tokenizer, cfg.bias)
    return _report(f"bias of {args.model}", scalars, args.out, describe(device))


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _bias_config_for(cfg: StudyConfig, metrics: list[str], data_dir: str | None):
    """The study's bias section with another set of metrics; the primary moves to one of them if it must."""
    from study.catalog import PRIMARY_METRICS
    from study.config import BiasConfig

    primary = cfg.bias.primary
    if primary.split("/")[1] not in metrics:
        primary = next((p for p in PRIMARY_METRICS if p.split("/")[1] in metrics), primary)
    raw = {**cfg.bias.model_dump(), "metrics": metrics, "data_dir": data_dir, "primary": primary}
    return _validated(BiasConfig, raw, "--bias")


def _validated(model, raw: dict, option: str):
    """`model` validated from `raw`; a bad value is a one-line usage error naming the option."""
    from pydantic import ValidationError

    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{option}: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def cmd_eval(args) -> int:
    from study.catalog import BIAS_METRICS, GLUE_TASKS, WORLD_TASKS
    from study.config import GlueConfig

    cfg = _config(args.config, args.set)
    quiet_libraries()
    fix_threads(cfg.threads)
    from study.device import describe
    from study.distill.models import check_model, load_masked_lm
    from study.metrics import bias, glue
    from study.world import tasks as world_tasks
    from study.world.build import build_world

    device = _device(args.device)
    data_dir = Path(args.data_dir) if args.data_dir else None
    if args.bias or args.glue or args.world:  # every part loads the model: one that is not there is one line first
        args.model = check_model(args.model)
    metrics: dict[str, float] = {}
    if args.bias:
        names = list(BIAS_METRICS) if args.bias == "all" else _csv(args.bias)
        bias_cfg = _bias_config_for(cfg, names, str(data_dir) if data_dir else cfg.bias.data_dir)
        model, tokenizer = load_masked_lm(args.model)
        metrics.update(bias.measure(model.to(device), tokenizer, bias_cfg)[0])
    if args.glue:
        tasks = list(GLUE_TASKS) if args.glue == "all" else _csv(args.glue)
        glue_cfg = _validated(GlueConfig, {**cfg.eval.glue.model_dump(), "tasks": tasks}, "--glue")
        glue_dir = glue_cfg.data_dir or (data_dir / "glue" if data_dir and (data_dir / "glue").is_dir() else None)
        metrics.update(glue.evaluate(args.model, glue_cfg, glue_dir, device=device))
    if args.world:
        world = build_world(cfg.world)
        metrics.update(glue.evaluate(args.model, cfg.eval.world, world_tasks.task_dir(world), WORLD_TASKS,
                                     prefix="world", device=device))
    if not metrics:
        raise ConfigError("nothing to evaluate: give --bias, --glue and/or --world")
    return _report(f"eval of {args.model}", metrics, args.out, describe(device))


def _seeds(value: str) -> int:
    """--seeds: a count of seeds, at least one (0 would fall back to the YAML's rerun.seeds, a negative to none)."""
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seeds (1 or more)")
    return count


def _benchmark(name: str) -> str:
    from study.metrics.bias_data import BENCHMARKS  # the standard library only: the answer comes at once

    if name not in (*BENCHMARKS, "all"):
        raise argparse.ArgumentTypeError(f"{name!r} is not one of {', '.join(BENCHMARKS)}, all")
    return name


def cmd_data_fetch(args) -> int:
    from study.metrics.bias_data import BENCHMARKS, fetch

    names = list(BENCHMARKS) if not args.names or "all" in args.names else list(dict.fromkeys(args.names))
    log.info(f"fetching {', '.join(names)}")
    root = fetch(names, args.to)
    log.info(f"bias data in {root} (licences in {root / 'LICENSES'})")
    return 0


def cmd_run(args) -> int:
    cfg = _config(args.config, args.set)
    if args.dry_run:
        from analysis.report import table_console
        from study.plan.dry_run import plan
        from study.record.folder import resolve

        if cfg.search is None:
            raise ConfigError(f"{args.config}: no search section to plan")
        resolved = resolve(cfg, args.study_dir)
        for part in plan(resolved, resolved.study_dir):
            table_console().print(part, highlight=False)
        return 0
    quiet_libraries()
    from study.record.folder import META, resolve
    from study.search.driver import run_study
    from study.search.watch import live_wanted, quiet_wanted

    try:
        run_study(cfg, args.study_dir, args.address, args.resume, args.source, live=live_wanted(args.verbosity),
                  quiet=quiet_wanted(args.verbosity))
    except KeyboardInterrupt:  # Ctrl-C: the study's trials stopped and its state saved (StudyInterrupted), or earlier
        directory = Path(resolve(cfg, args.study_dir).study_dir)
        if not (directory / META).is_file():
            print("kdstudy: interrupted before the study started; nothing was kept", file=sys.stderr)
            return 130
        print(f"kdstudy: interrupted; {directory} is kept. Continue the study with:", file=sys.stderr)
        print(_resume_command(args, directory), file=sys.stderr)
        return 130
    except TrackingUnavailable as err:
        print(f"kdstudy: {err}:", file=sys.stderr)
        print(_resume_command(args, Path(resolve(cfg, args.study_dir).study_dir)), file=sys.stderr)
        return 1
    return 0


def _resume_command(args, directory: Path) -> str:
    """The `kdstudy run` that continues this one: the same YAML and overrides, the study folder, --resume."""
    import shlex

    return shlex.join(["kdstudy", "run", args.config, *(x for s in args.set for x in ("--set", s)),
                       "--study-dir", str(directory), *(["--address", args.address] if args.address else []),
                       "--resume"])


def cmd_rerun(args) -> int:
    quiet_libraries()
    from study.reruns.rerun import rerun
    from study.search.watch import quiet_wanted

    rerun(args.study_dir, args.pick, args.seeds, args.full, args.address, args.device,
          quiet=quiet_wanted(args.verbosity))
    return 0


def cmd_pull(args) -> int:
    from study.record.folder import local_store
    from study.record.mirror import pull_record

    pull_record(args.storage, Path(args.study_dir).expanduser().resolve())
    log.info(f"{args.study_dir}: the study record from {args.storage}; `kdstudy pareto {args.study_dir}` shows its "
             f"front, `mlflow ui --backend-store-uri {local_store(args.study_dir)}` its runs")
    return 0


def cmd_export(args) -> int:
    quiet_libraries()
    from study.student.export import export

    out = export(args.study_dir, args.pick, args.to, args.push_to_hub)
    print(out)
    return 0


def cmd_pareto(args) -> int:
    from analysis.report import summarize, summarize_race, table_console
    from analysis.runs import read_study
    from study.publish import front_tables

    record = read_study(args.study_dir)
    front, race = summarize(record), summarize_race(record)
    from analysis.importance import study_importances

    found = study_importances(record) if args.importance else {}
    if args.json:
        out = front.to_json() | ({"race": race.to_json()} if race is not None else {})
        print(json.dumps(out | ({"importance": found} if args.importance else {}), indent=2))
        return 0
    for table in front_tables(record, front, race):
        table_console().print(table)
    if args.importance:
        from analysis.importance import importance_table

        if not found:
            log.warning("too few finished trials (or no parameter common to all of them) to attribute anything")
        else:
            table_console().print(importance_table(found, f"{record.name}: what drives each objective"))
    return 0


def cmd_effects(args) -> int:
    from analysis.report import table_console
    from analysis.runs import read_study
    from study.errors import DataError
    from study.publish import publish_effects
    from study.record.folder import EFFECTS_FIGURE, EFFECTS_JSON

    record = read_study(args.study_dir)
    if record.config.search is None or not record.finished()[0]:
        raise DataError(f"{args.study_dir}: no finished trial to read effects from")
    if record.config.search.sampler.name != "grid":
        log.warning(f"{args.study_dir} is a {record.config.search.sampler.name} search, not a grid: its levels are "
                    f"whatever was sampled, and the effects are not those of a balanced design")
    if args.json:
        from analysis.effects import study_effects

        print(json.dumps(study_effects(record), indent=2))
        return 0
    for table in publish_effects(record):
        table_console().print(table)
    log.info(f"{EFFECTS_JSON} and {EFFECTS_FIGURE} written to {record.directory} and logged to the parent run")
    return 0


def _device_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", metavar="auto|cpu|cuda|cuda:N",
                        help="where to compute; auto: the first GPU when there is one, else the CPU (default)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kdstudy", description=__doc__.split("\n")[0])
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_const", const=1, dest="verbosity", default=0,
                          help="debug messages too")
    loudness.add_argument("-q", "--quiet", action="store_const", const=-1, dest="verbosity",
                          help="warnings and errors only (tables and results still print)")
    sub = parser.add_subparsers(dest="command", required=True)

    world = sub.add_parser("world", help="the built-in bias-planted world").add_subparsers(dest="action", required=True)
    build = world.add_parser("build", help="build (or load) the world and print what it holds")
    build.add_argument("config", nargs="?", help="a study YAML whose `world` section to use (default: defaults)")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    build.add_argument("--out", help="where to write it (default: the cache, $KDSTUDY_CACHE or ~/.cache/kdstudy)")
    build.set_defaults(func=cmd_world_build)

    distill = sub.add_parser("distill", help="run one distillation and measure teacher and student")
    distill.add_argument("config")
    distill.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    distill.add_argument("--out", help="output dir (default: runs/<name>-distill)")
    _device_option(distill)
    distill.set_defaults(func=cmd_distill)

    measure = sub.add_parser("bias", help="measure the template bias of any masked LM")
    measure.add_argument("model", help="a model dir or hub name")
    measure.add_argument("--config", help="a study YAML whose `bias` section to use")
    measure.add_argument("--out", help="write the metrics as JSON here")
    _device_option(measure)
    measure.set_defaults(func=cmd_bias)
    ev = sub.add_parser("eval", help="GLUE, the world's tasks and the bias suite for one model")
    ev.add_argument("model", help="a model dir or hub name")
    ev.add_argument("--glue", metavar="TASKS", help="comma-separated GLUE tasks, or all")
    ev.add_argument("--world", action="store_true", help="the built-in world's tasks (world/score)")
    ev.add_argument("--bias", metavar="METRICS", help="comma-separated of template,crows,seat,stereoset, or all")
    ev.add_argument("--data-dir", help="benchmark data: crows_pairs/, seat/, stereoset/dev.json, glue/")
    ev.add_argument("--config", help="a study YAML whose world, bias and eval sections to use")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ev.add_argument("--out", help="write the metrics as one flat JSON object here")
    _device_option(ev)
    ev.set_defaults(func=cmd_eval)

    data = sub.add_parser("data", help="the bias benchmarks' files").add_subparsers(dest="action", required=True)
    get = data.add_parser("fetch", help="download CrowS-Pairs, SEAT and StereoSet from their sources, checksummed")
    get.add_argument("names", nargs="*", metavar="NAME", type=_benchmark,
                     help="crows, seat, stereoset or all (the default)")
    get.add_argument("--to", metavar="DIR", help="where to put them (default: data/ in the cache, $KDSTUDY_CACHE or "
                                                 "~/.cache/kdstudy, where bias.data_dir reads unless set)")
    get.set_defaults(func=cmd_data_fetch)

    run = sub.add_parser("run", help="run a study: Ray Tune + Optuna over the YAML's search space, tracked in MLflow")
    run.add_argument("config", help="a study YAML with a search section (search_spaces/*.yaml)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--study-dir", help="where the study lives (default: the YAML's study_dir, else runs/<name>)")
    run.add_argument("--address", help="join a Ray cluster (auto, ray://host:10001); default: start a local one")
    run.add_argument("--resume", action="store_true", help="continue the interrupted study in --study-dir")
    run.add_argument("--from", dest="source", metavar="STORAGE",
                     help="with --resume: rebuild the (new or empty) study folder from the record in this storage "
                          "(search.storage_path: a path or s3://...) first")
    run.add_argument("--dry-run", action="store_true", help="print the plan (trials, resources, budget) and stop")
    run.set_defaults(func=cmd_run)

    again = sub.add_parser("rerun", help="rerun a study's chosen trial with several seeds (and the full budget)")
    again.add_argument("study_dir")
    again.add_argument("--pick", default="recommended",
                       help="recommended | knee | min:<metric> | max:<metric> | trial:<id> (default: recommended, the "
                            "confirm stage's noise-aware pick)")
    again.add_argument("--seeds", type=_seeds, help="how many seeds (default: the YAML's rerun.seeds)")
    again.add_argument("--full", action="store_true", help="apply the YAML's rerun.full overrides (the full budget)")
    again.add_argument("--address", help="join a Ray cluster (auto, ray://host:10001); default: start a local one")
    again.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="the seeds' Ray Train workers on GPUs (cuda) or not (cpu); auto: on GPUs when the "
                            "cluster has enough for them (default)")
    again.set_defaults(func=cmd_rerun)

    pull = sub.add_parser("pull", help="copy a study's record from its storage into a folder (then pareto, mlflow ui)")
    pull.add_argument("storage", help="the study's search.storage_path (a path or s3://...)")
    pull.add_argument("study_dir", help="a new or empty folder")
    pull.set_defaults(func=cmd_pull)

    ship = sub.add_parser("export", help="a study's chosen student as a Hugging Face model dir with its model card, "
                                         "registered in MLflow (and pushed to the Hub)")
    ship.add_argument("study_dir")
    ship.add_argument("--pick", default="recommended",
                      help="recommended | knee | min:<metric> | max:<metric> | trial:<id> (default: recommended)")
    ship.add_argument("--to", metavar="DIR", help="where to write it (default: <study dir>/export/<trial id>)")
    ship.add_argument("--push-to-hub", metavar="USER/REPO", help="also upload it to this Hub repo (needs a token: "
                                                                 "`hf auth login` or $HF_TOKEN)")
    ship.set_defaults(func=cmd_export)

    eff = sub.add_parser("effects", help="a grid study's main effects, interactions and ANOVA, with 95%% intervals")
    eff.add_argument("study_dir")
    eff.add_argument("--json", action="store_true", help="print JSON instead of tables (nothing written or logged)")
    eff.set_defaults(func=cmd_effects)

    front = sub.add_parser("pareto", help="a finished (or running) study's Pareto front, from its MLflow runs")
    front.add_argument("study_dir")
    front.add_argument("--json", action="store_true", help="print JSON instead of a table")
    front.add_argument("--importance", action="store_true", help="also what drives each objective (fANOVA)")
    front.set_defaults(func=cmd_pareto)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbosity)
    try:
        return args.func(args)
    except USAGE_ERRORS as err:
        print(f"kdstudy: error: {err}", file=sys.stderr)
        return 2
    except Diverged as err:
        print(f"kdstudy: distillation diverged: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
