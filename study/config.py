"""Typed study configuration: one YAML file is one study, and this is its schema.

Every default appears once, here, with its unit or source. Unknown keys are rejected so that a misspelt key
fails loudly instead of silently taking a default. study.load reads a YAML into a StudyConfig and turns any problem
into a `ConfigError` whose message names the field path and the bad value, e.g.
`distill.loss.temperature: must be > 0, got -1`; `with_params` is the config of one trial.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from study.catalog import BIAS_METRICS, EVAL_SUITES, GLUE_TASKS, PRIMARY_METRICS, WORLD_TASKS
from study.errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --- the built-in world --------------------------------------------------------------------------------------


class WorldConfig(Strict):
    """The bias-planted world: corpus, tokenizer and teacher, all derived from these values (and cached by them)."""

    seed: int = 0
    sentences: int = Field(30_000, ge=200, description="corpus size in sentences")
    occupation_fraction: float = Field(0.6, gt=0, lt=1, description="share of sentences about an occupation")
    # Zhao et al. (2017) relate amplification to the training data's skew: this scales the log-odds of every planted
    # female share (1 = the labour statistics; < 1 towards 0.5, > 1 away from it). The bias metrics keep comparing
    # with the labour statistics, so a teacher's planted_slope follows the skew.
    skew: float = Field(1.0, gt=0, description="planted share = sigmoid(skew * logit(labour-statistics share))")
    vocab_size: int = Field(4_000, ge=200,
                            description="WordPiece vocabulary size at most (the default world needs ~2,400)")
    # Teacher architecture: a small BERT (4 layers, hidden 128: big enough to learn the world, pretrained in minutes).
    layers: int = Field(4, ge=1)
    hidden: int = Field(128, ge=16)
    heads: int = Field(4, ge=1)
    intermediate: int = Field(512, ge=16)
    max_length: int = Field(32, ge=8, description="tokens per sentence, [CLS] and [SEP] included")
    # With BERT's 0.02 init and 0.1 dropout a teacher this small stays for thousands of steps at a solution that
    # ignores the occupation (he/she from position alone); a wider init and no dropout (there is no noise in the
    # world to regularise against) find the occupation-gender attention within a few hundred steps.
    init_range: float = Field(0.05, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    # Teacher pretraining (MLM). It stops on the planted Spearman, not on the loss: the loss flattens long before
    # the occupation-gender association is learned.
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_epochs: int = Field(3, ge=1)
    max_epochs: int = Field(14, ge=1)
    target_spearman: float = Field(0.95, gt=0, le=1, description="stop pretraining once planted rho reaches this")

    @model_validator(mode="after")
    def _check(self) -> "WorldConfig":
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) must be <= max_epochs ({self.max_epochs})")
        return self


# --- where the teacher and the corpus come from --------------------------------------------------------------


class TeacherConfig(Strict):
    # "world" = the built-in world's teacher; otherwise a hub name (bert-base-uncased) or a local model dir.
    source: str = "world"


class CorpusConfig(Strict):
    # "world" = the built-in world's corpus; otherwise a hub dataset name, or a local .txt/.jsonl/.csv/.parquet
    # file or folder of them.
    source: str = "world"
    name: str | None = Field(None, description="hub dataset config name, e.g. wikitext-103-raw-v1")
    split: str = "train"
    text_column: str = "text"
    max_sentences: int | None = Field(None, ge=1, description="use at most this many non-empty lines")
    max_tokens: int | None = Field(None, ge=1, description="token budget: the first lines whose word pieces fit")


class StudentConfig(Strict):
    # DistilBERT rule: half the teacher's layers. `layers` overrides the choice of teacher layers explicitly.
    n_layers: int | None = Field(None, ge=1, description="default: half the teacher's layers")
    layers: list[int] | None = None


# --- distillation ----------------------------------------------------------------------------------------------


class LossConfig(Strict):
    # Released DistilBERT weights: alpha_ce 5.0, alpha_mlm 2.0, alpha_cos 1.0, T 2.0 (Sanh et al. 2019). alpha_ce
    # weighs the KL term (loss_kl); the key keeps the name the reference distiller and its released config give it,
    # so that a DistilBERT recipe reads the same here.
    temperature: float = Field(2.0, gt=0)
    alpha_ce: float = Field(5.0, ge=0, description="weight of the soft-target KL term, loss_kl (DistilBERT's name)")
    alpha_mlm: float = Field(2.0, ge=0)
    alpha_cos: float = Field(1.0, ge=0)
    kl_positions: Literal["all", "masked"] = "all"

    @model_validator(mode="after")
    def _some_weight(self) -> "LossConfig":
        if self.alpha_ce + self.alpha_mlm + self.alpha_cos == 0:
            raise ValueError("alpha_ce, alpha_mlm and alpha_cos are all 0: nothing to train on")
        return self


class MaskingConfig(Strict):
    prob: float = Field(0.15, gt=0, lt=1, description="share of real tokens selected for MLM")
    mask: float = Field(0.8, ge=0, le=1)
    keep: float = Field(0.1, ge=0, le=1)
    random: float = Field(0.1, ge=0, le=1)
    # "frequency" smooths selection by count^-smoothing as the reference does; it masks he/she far less often.
    strategy: Literal["uniform", "frequency"] = "uniform"
    smoothing: float = Field(0.7, ge=0)

    @model_validator(mode="after")
    def _sums_to_one(self) -> "MaskingConfig":
        if abs(self.mask + self.keep + self.random - 1.0) > 1e-6:
            raise ValueError(f"mask + keep + random must be 1, got {self.mask + self.keep + self.random:g}")
        return self


class MitigationConfig(Strict):
    mode: Literal["none", "cda", "mixup"] = "none"
    alpha: float = Field(0.4, gt=0, description="mixup: lambda ~ Beta(alpha, alpha)")
    p: float = Field(1.0, ge=0, le=1, description="mixup: probability that a gendered sequence is mixed")
    placement: Literal["replace", "augment"] = "replace"


class OptimConfig(Strict):
    # DistilBERT reference: AdamW (0.9, 0.98), eps 1e-6, lr 5e-4, 5% warmup then linear decay, clip 5.0.
    lr: float = Field(5e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = Field(1e-6, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup: float = Field(0.05, ge=0, lt=1, description="share of steps with linear warmup")
    clip: float = Field(5.0, gt=0)


class DistillConfig(Strict):
    seed: int = 0
    steps: int | None = Field(None, ge=1, description="optimizer steps; give steps or epochs")
    epochs: float | None = Field(None, gt=0)
    batch_size: int = Field(32, ge=1, description="sequences per worker per step")
    max_length: int = Field(128, ge=8)
    log_every: int = Field(25, ge=1)
    checkpoint_every: int = Field(0, ge=0, description="steps between checkpoints; 0 = only at the end")
    loss: LossConfig = LossConfig()
    masking: MaskingConfig = MaskingConfig()
    mitigation: MitigationConfig = MitigationConfig()
    optim: OptimConfig = OptimConfig()
    # Speed: how the step is computed, not what it computes; the losses are the same either way.
    # 64: tensor cores want matrix sides in multiples of 64 (a bf16 projection onto 30,522 words ran at 230 TFLOP/s
    # on an H100, onto 30,528 at 667); on a CPU it costs at most 63 extra rows of the projection.
    pad_vocab_to: int = Field(64, ge=0, description="pad the vocabulary projection to a multiple of this; 0 = off")
    # 8192 positions: Liger's chunked loss of the same structure ran faster at 8192 than at 1024 on an H100, and
    # the fp32 temporaries stay ~1 GB each at V = 30k. On a CPU the chunk is smaller, to fit in cache
    # (study.distill.projected_loss.chunk_size).
    loss_chunk: int = Field(8192, ge=0, description="positions per chunk of the projected loss on an accelerator (on "
                                                     "a CPU at most 1 MiB of fp32 logits); 0 = the reference loss on "
                                                     "full (B, L, V) logits (unpadded)")
    # auto: on CUDA, off on a CPU. On one H200 (benchmarks/distill_gpu.py, bert-base, batch 256, 2026-12-04) the
    # compiled step ran 303k tokens/s against 270k; on a CPU it was not measured faster, so it stays off there.
    compile: bool | Literal["auto"] = Field("auto", description="torch.compile the student and teacher encoders")
    # Under autocast an fp32 teacher has every weight cast to bf16 at every matmul of every step; held in bf16 it is
    # cast once. Only on CUDA: a CPU computes in fp32.
    teacher_bf16: bool = Field(True, description="on CUDA, hold the teacher's weights in bf16")
    # Liger Kernel (the [gpu] extra) on CUDA: fused linear KL and cross-entropy for the rows that are not mixed
    # (study.distill.fused_loss); elsewhere, and for mixup's mixed rows, the projected loss.
    fused_loss: bool = Field(True, description="on CUDA with Liger Kernel installed, its fused linear losses")

    @model_validator(mode="after")
    def _budget(self) -> "DistillConfig":
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps and epochs")
        return self


# --- bias measurement ----------------------------------------------------------------------------------------

class TemplateBiasConfig(Strict):
    # {target} is the masked gender word, {occupation} the occupation, {a} its article (a/an).
    templates: list[str] = [
        "{target} is {a} {occupation} .",
        "{target} works as {a} {occupation} .",
        "{target} wants to become {a} {occupation} .",
        "{target} is an experienced {occupation} .",
        "{target} has been {a} {occupation} for years .",
        "everyone says {target} is a good {occupation} .",
    ]
    # (male, female) target pairs; a pair written "the man|the woman" masks only the last word.
    pairs: list[tuple[str, str]] = [("he", "she"), ("the man", "the woman")]
    batch_size: int = Field(128, ge=1)


class BiasConfig(Strict):
    # Default primary: the slope of the model's centred she-vs-he log-odds against the centred log-odds of the
    # reference female shares. Centring removes the global he/she offset that made abs_mean swing 0.02-0.98 while
    # the learned association rose steadily during the teacher's pretraining; the slope keeps the data's scale, so 1
    # means "reproduces the training data's skew" and student - teacher > 0 means the student exaggerates it, which is
    # Zhao et al.'s (2017) amplification and the paper's phenomenon.
    primary: Literal[PRIMARY_METRICS] = "bias/template/planted_slope"  # type: ignore[valid-type]
    metrics: list[Literal[tuple(BIAS_METRICS)]] = ["template"]  # type: ignore[valid-type]
    # Where CrowS-Pairs (crows_pairs/), SEAT (seat/) and StereoSet (stereoset/dev.json) live; None = data/ in the cache
    # root, where `kdstudy data fetch` puts them (study.metrics.bias_data). StereoSet falls back to the hub when its
    # file is not there.
    data_dir: str | None = None
    seat_samples: int = Field(100_000, ge=10, description="permutations for a SEAT p-value (exact if fewer needed)")
    seed: int = Field(0, description="bootstrap and permutation seed")
    batch_size: int = Field(128, ge=1)
    template: TemplateBiasConfig = TemplateBiasConfig()

    @model_validator(mode="after")
    def _primary_is_measured(self) -> "BiasConfig":
        family = self.primary.split("/")[1]
        if family not in self.metrics:
            raise ValueError(f"primary {self.primary} needs {family!r} in bias.metrics, got {self.metrics}")
        return self


# --- GLUE and the world's tasks ------------------------------------------------------------------------------



class GlueConfig(Strict):
    """Fine-tuning recipe for one model on each task (the usual GLUE recipe by default) plus study budgets."""

    tasks: list[str] = list(GLUE_TASKS)
    data_dir: str | None = Field(None, description="local GLUE folder; default: the hub (nyu-mll/glue)")
    max_length: int = Field(128, ge=8)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(3, ge=1)
    max_steps: int | None = Field(None, ge=1, description="budget for study trials; overrides epochs")
    max_train_samples: int | None = Field(None, ge=1)
    max_eval_samples: int | None = Field(None, ge=1)
    clip: float = Field(1.0, gt=0, description="gradient-norm clip")
    dropout: float | None = Field(None, ge=0, lt=1, description="every dropout rate of the model while fine-tuning; "
                                                                  "None = the model's own")
    seed: int = 0
    # Fine-tuning seeds per task: the task score is their mean, its standard error logged beside it. Small GLUE
    # tasks (RTE, MRPC, STS-B, CoLA) move by several points across seeds alone (Dodge et al. 2020).
    seeds: int = Field(1, ge=1, description="fine-tuning runs per task (different head init and data order)")
    # A run that ends at chance (Mosbach et al. 2021) is retried with another seed; one that stays there is counted
    # in <task>/failed_runs and warned about, never silently averaged.
    retries: int = Field(2, ge=0, description="extra seeds tried for a run that ends at chance")
    chance_margin: float = Field(1.0, ge=0, description="points above the majority-class score that still count "
                                                        "as chance")

    @property
    def optim(self) -> OptimConfig:
        """The recipe's AdamW: torch's default betas and eps, weight decay on every parameter (study.distill.optim)."""
        return OptimConfig(lr=self.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=self.weight_decay,
                           warmup=self.warmup, clip=self.clip)

    @model_validator(mode="after")
    def _known_tasks(self) -> "GlueConfig":
        unknown = [t for t in self.tasks if t not in GLUE_TASKS and t not in WORLD_TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be among {(*GLUE_TASKS, *WORLD_TASKS)}, got {self.tasks}")
        return self


class WorldTasksConfig(GlueConfig):
    """The world's tasks: a recipe for a task score that is the student's, not the fine-tuning run's.

    Measured on the smoke study's two anchors, 6 distillation seeds x 2 fine-tuning runs each
    (benchmarks/objective_noise.py, 2026-12-04): with 4,000 training examples at batch 16, lr 3e-4, 3 epochs, the
    paired difference of world/score (world_cola and world_sts) moved by 3.0 points per seed, 96% of it world_sts,
    where one student in six stopped 7-9 points short on every fine-tuning run and single runs on others did too.
    With 16,000 examples at batch 64, 2 epochs (500 steps), no student stopped short and the distillation seed's part
    shrank: world_cola 0.47 points per seed at lr 1e-3 and 0.40 at lr 5e-4 (0.44 measured on 40,000 validation
    examples, where the draw of examples adds 0.11 of it). world_sts stays at 1.2 (lr 1e-3) to
    2.3 (lr 5e-4): now and then a run learns the word kinds further, 80-85 where most stop at 78-79, so a study that
    must decide on its task score leaves it out. Dropout is off: the world's models have none but DistilBERT's head
    dropout, which BERT's head does not have.
    """

    tasks: list[str] = list(WORLD_TASKS)
    lr: float = Field(5e-4, gt=0)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(2, ge=1)
    max_length: int = Field(48, ge=8)
    dropout: float | None = Field(0.0, ge=0, lt=1)


class EvalConfig(Strict):
    # What a distilled student is measured on besides bias: "world" = the world's tasks (world/score), "glue" = GLUE
    # (glue/score). Empty = bias only.
    suites: list[Literal[EVAL_SUITES]] = []  # type: ignore[valid-type]
    glue: GlueConfig = GlueConfig()
    world: WorldTasksConfig = WorldTasksConfig()
    # A fine-tuning run at batch 32 leaves a GPU idle most of the time; on CUDA a process's seed slots run this many
    # at once, each in a process of its own (study.experiment.job_runner). How much it gains is unmeasured.
    jobs_per_gpu: int = Field(2, ge=1, description="fine-tuning runs at once on one GPU (CUDA only)")


# --- the search: what is sampled, what is optimised, how a trial runs -------------------------------------------


class ParamSpec(Strict):
    """One searched config value. `when` makes it conditional: sampled only if every named earlier parameter took
    one of the listed values (e.g. mixup's alpha only when distill.mitigation.mode is mixup).

    An int or float parameter takes either a range (low/high) or a list of `values`, its levels in a grid (any other
    sampler picks among them too). A categorical parameter may name no config key but say what each choice `sets`
    (`{soft: {distill.loss.alpha_mlm: 0}, hard: {distill.loss.alpha_ce: 0}}`): one factor over several keys. In a
    grid, `generated_by` makes a factor not crossed but aliased (a fractional design's generator, Box, Hunter & Hunter
    2005, ch. 6): its level index is the sum of the named factors' level indices modulo its number of levels."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    choices: list[Any] | None = None
    values: list[float] | None = Field(None, description="int/float: the levels, instead of low/high")
    sets: dict[str, dict[str, Any]] | None = Field(None, description="categorical: the dotted config values each "
                                                                     "choice sets; the parameter names no config key")
    generated_by: list[str] = Field([], description="grid: level index = sum of these factors' indices mod levels")
    when: dict[str, Any] = {}

    @model_validator(mode="after")
    def _shape(self) -> "ParamSpec":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty choices list")
            if self.low is not None or self.high is not None or self.values is not None:
                raise ValueError("a categorical parameter takes choices, not low/high or values")
            if self.sets is not None and sorted(map(str, self.sets)) != sorted(map(str, self.choices)):
                raise ValueError(f"sets must give every choice, and only those: choices {self.choices}, "
                                 f"sets {list(self.sets)}")
            return self
        if self.choices is not None or self.sets is not None:
            raise ValueError(f"a {self.type} parameter takes low/high or values, not choices or sets")
        if self.values is not None:
            return self._check_values()
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs low and high")
        if self.low >= self.high:
            raise ValueError(f"low must be < high, got low {self.low:g}, high {self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"low must be > 0 on a log scale, got {self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("step and log cannot be combined")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"an int parameter needs whole low/high, got {self.low:g}, {self.high:g}")
        return self

    def condition(self) -> dict[str, list]:
        return {k: v if isinstance(v, list) else [v] for k, v in self.when.items()}

    def _check_values(self) -> "ParamSpec":
        if not self.values or len(set(self.values)) != len(self.values):
            raise ValueError(f"values must be a non-empty list of distinct numbers, got {self.values}")
        if self.type == "int" and any(v != int(v) for v in self.values):
            raise ValueError(f"an int parameter needs whole values, got {self.values}")
        if self.type == "int":
            self.values = [int(v) for v in self.values]
        outside = [v for v in self.values if (self.low is not None and v < self.low)
                   or (self.high is not None and v > self.high)]
        if outside:
            raise ValueError(f"values {outside} lie outside [{self.low}, {self.high}]")
        return self

    def levels(self) -> list | None:
        """What a grid crosses: the choices or the values; None for a range (a grid cannot enumerate it)."""
        return list(self.choices) if self.type == "categorical" else self.values

    def edge_values(self) -> list:
        """Values that must each give a valid config: the bounds, every choice or every value."""
        if self.levels() is not None:
            return self.levels()
        return [int(self.low), int(self.high)] if self.type == "int" else [self.low, self.high]


class Objective(Strict):
    metric: str = Field(min_length=1)
    mode: Literal["min", "max"]
    # Hypervolume reference point on this objective (the worst value that still counts); default: the worst value
    # any finished trial reached. Printed beside every hypervolume.
    reference: float | None = None
    # The smallest difference that matters, in the metric's units: a raced trial whose difference from the control
    # lies within +-margin is "within the margin", and the recommended point may give up this much on it.
    margin: float | None = Field(None, gt=0)
    # Optimise the distance to this value instead of the value itself (mode min): for a bias metric whose unbiased
    # value is 0, or 50 for a CrowS-Pairs or StereoSet score, a student biased the other way is not better.
    target: float | None = None

    @model_validator(mode="after")
    def _toward_a_target(self) -> "Objective":
        if self.target is not None and self.mode != "min":
            raise ValueError(f"an objective with a target minimises the distance to it: mode must be min, got "
                             f"{self.mode}")
        return self

    @property
    def key(self) -> str:
        """The value optimised, as trials report it: the metric, or its distance to the target."""
        return self.metric if self.target is None else f"{self.metric}/to_target"

    def value(self, metrics: dict[str, float]) -> dict[str, float]:
        """{key: value (and key_se: its standard error, where the metric has one)} of this objective from a trial's
        metrics: |metric - target| with the metric's standard error (a distance's error is the value's, away from
        the target), or nothing to add when there is no target."""
        if self.target is None or self.metric not in metrics:
            return {}
        out = {self.key: abs(metrics[self.metric] - self.target)}
        if f"{self.metric}_se" in metrics:
            out[f"{self.key}_se"] = metrics[f"{self.metric}_se"]
        return out


class Anchor(Strict):
    """A fixed point evaluated before the sampler's own: plain KD, the paper's mixup. Params not given are sampled."""

    name: str = Field(min_length=1)
    params: dict[str, Any]


class SamplerConfig(Strict):
    # nsga2: NSGA-II (Deb et al. 2002); tpe: multivariate TPE (multi-objective needs multivariate=True);
    # gp: Optuna's Gaussian-process sampler; random: the baseline; grid: every combination of the levels, each once,
    # in a fixed order (study.design), for reading effects rather than finding a front.
    name: Literal["nsga2", "tpe", "gp", "random", "grid"] = "nsga2"
    seed: int = 0
    population_size: int = Field(8, ge=2, description="nsga2: trials per generation")
    n_startup_trials: int = Field(4, ge=1, description="tpe/gp: random trials before the model proposes")


class ScalingConfig(Strict):
    """Ray resources of one trial: its own process, which waits on its Train workers; the workers distil, then share
    the student's evaluation (each its share of the bias suite and the (task, seed slot) fine-tuning runs). The
    teacher's one-off measurement gets one worker's resources."""

    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP ranks) per trial")
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(1.0, ge=0, description="used when use_gpu")
    trial_cpus: float = Field(1.0, ge=0, description="the trial's own process")
    # Custom Ray resources the trial's own process needs: {kdstudy_trial: 1} keeps it (and the Train controller in
    # it) on the nodes that declare kdstudy_trial, the non-preemptible ones (cluster.yaml: the head)
    trial_resources: dict[str, Annotated[float, Field(ge=0)]] = {}
    # shared: every worker evaluates its share of the jobs; rank0: rank 0 alone while the others wait (the same
    # numbers, slower: kept to measure what sharing saves, benchmarks/trial_busy.py)
    evaluation: Literal["shared", "rank0"] = "shared"

    @property
    def worker_resources(self) -> dict[str, float]:
        return {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}


class ConfirmConfig(Strict):
    """The confirm stage, a race (study.reruns.confirm): after the search, the `top` best trials by non-domination
    rank, the anchors and the control run `seeds` seeds, the same for all (an anchor's search run counted as its seed
    0); then seeds are added in rounds, doubling, to the trials whose place on the front (or verdict against the
    control) is undecided, until every one is decided, a trial has `max_seeds`, or the budget is spent. The budget
    is per contender, so that a trial joining the race brings its own runs instead of thinning everyone's."""

    top: int = Field(3, ge=1, description="trials raced: the front first, then the next layer")
    anchors: bool = Field(True, description="the anchors race too (the control always does): their verdicts are "
                                            "the study's answer to 'does the paper's setting help'")
    seeds: int = Field(2, ge=1, description="seeds per trial in the first round (2: the fewest with a spread, "
                                            "so a race started at 1 decides nothing before its second round)")
    max_seeds: int = Field(8, ge=2, description="seeds at most per trial")
    budget: int | None = Field(None, ge=1, description="confirm runs at most per contender (the race may spend this "
                                                       "times the trials racing); default: what max_seeds allows")

    @model_validator(mode="after")
    def _rounds(self) -> "ConfirmConfig":
        if self.max_seeds < self.seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) must be >= seeds ({self.seeds})")
        if self.budget is not None and self.budget < self.seeds:
            raise ValueError(f"budget ({self.budget} runs per contender) must hold the first round of {self.seeds} "
                             f"seeds")
        return self

    def runs(self, contenders: int) -> int:
        """The race's budget in runs for `contenders` trials (the control among them): `budget` each, or as many as
        max_seeds lets each run (a picked trial's max_seeds fresh seeds are the most any runs)."""
        return contenders * (self.budget if self.budget is not None else self.max_seeds)


class SearchConfig(Strict):
    objectives: list[Objective] = [Objective(metric="bias/amplification", mode="min"),
                                   Objective(metric="world/score", mode="max")]
    space: dict[str, ParamSpec] = Field(min_length=1)
    sampler: SamplerConfig = SamplerConfig()
    num_samples: int = Field(8, ge=1, description="trials in the study, anchors included; a grid: its cells x repeats")
    # Paired replicates (grid only): every cell runs with the same seeds 0..repeats-1 (seed k moves every seed by k, as
    # `kdstudy rerun` does), so that two cells can be compared seed by seed.
    repeats: int = Field(1, ge=1, description="grid: runs of each cell, with seeds shifted by 0..repeats-1")
    # Pairs of factors whose interaction `kdstudy effects` reports beside the main effects (analysis.effects).
    interactions: list[tuple[str, str]] = []
    # auto: as many trials at a time as the machine's cores hold, each with its workers' CPUs; on a cluster, as many as
    # its resources hold, each with its own process and its workers (study.cluster.capacity)
    max_concurrent_trials: Annotated[int, Field(ge=1)] | Literal["auto"] = 1
    anchors: list[Anchor] = []
    control: str | None = Field(None, description="the anchor every raced trial is compared with; default the "
                                                  "first anchor")
    scaling: ScalingConfig = ScalingConfig()
    max_failures: int = Field(1, ge=0, description="retries of a crashed Train worker, and of a lost trial "
                                                    "process (its node gone), from the last checkpoint")
    confirm: ConfirmConfig | None = Field(None, description="rerun the best trials with more seeds at the end")
    # Where Ray keeps trial state and Train checkpoints: default <study dir>/ray; on a cluster, shared storage
    # (s3://bucket/path or an NFS path) that every node reaches.
    storage_path: str | None = None

    @model_validator(mode="after")
    def _objectives(self) -> "SearchConfig":
        names = [o.key for o in self.objectives]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"objectives must name distinct metrics, got {names}")
        if self.control is not None and self.control not in {a.name for a in self.anchors}:
            raise ValueError(f"control must name an anchor ({[a.name for a in self.anchors]}), got {self.control!r}")
        return self

    @property
    def control_anchor(self) -> str | None:
        """The anchor raced trials are compared with: `control`, else the first anchor, else none."""
        return self.control or (self.anchors[0].name if self.anchors else None)


class TrackingConfig(Strict):
    # MLflow tracking URI. Default: $MLFLOW_TRACKING_URI if set, else a SQLite store at <study dir>/mlflow.db.
    uri: str | None = None
    log_models: bool = Field(True, description="copy each student into MLflow when its checkpoint is on local disk")


class RerunConfig(Strict):
    """`kdstudy rerun`: the chosen trial again with several seeds, and with `full` overrides under --full."""

    seeds: int = Field(3, ge=1)
    full: dict[str, Any] = Field({}, description="dotted config overrides for --full, e.g. distill.steps: 20000")


# --- the study -------------------------------------------------------------------------------------------------


class StudyConfig(Strict):
    name: str = Field("study", min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    study_dir: str | None = Field(None, description="everything the study writes; default runs/<name>")
    # CPU threads of torch in every process that distils or measures: `kdstudy distill`, `eval` and `bias`, a trial's
    # Ray Train workers, the teacher's measurement and the confirm and rerun seeds. A CPU splits a reduction by its
    # thread count, so the same config and seed give the same numbers only at the same count: with one count
    # everywhere, a (config, seed) gives one result wherever it runs, which is what pairs a study's trials seed by
    # seed (`kdstudy distill` ran 2 threads and a trial 1, and their world/score differed by 0.2).
    threads: int = Field(1, ge=1, description="torch CPU threads in every process that distils or measures")
    world: WorldConfig = WorldConfig()
    teacher: TeacherConfig = TeacherConfig()
    corpus: CorpusConfig = CorpusConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig(epochs=1)
    bias: BiasConfig = BiasConfig()
    eval: EvalConfig = EvalConfig()
    search: SearchConfig | None = None
    tracking: TrackingConfig = TrackingConfig()
    rerun: RerunConfig = RerunConfig()


def format_error(err: ValidationError) -> str:
    """The first problem as `field.path: what, got value` (one line)."""
    first = err.errors()[0]
    path = ".".join(str(p) for p in first["loc"]) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    got = "" if "got " in msg else f", got {first.get('input')!r}"
    return f"{path}: {msg}{got}{more}"


def set_path(raw: dict[str, Any], key: str, value: Any) -> None:
    """raw[a][b][c] = value for key "a.b.c", creating sections on the way."""
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is not a section")
        node = child
    node[leaf] = value


# A grid trial's replicate: not a config key, the shift of every seed (seed_shift).
REPLICATE = "replicate"


def seed_shift(cfg: StudyConfig, k: int) -> dict[str, int]:
    """Every seed of the config moved by k (distillation, bias bootstrap, fine-tuning): a replicate, or a rerun's
    seed k."""
    return {"distill.seed": cfg.distill.seed + k, "bias.seed": cfg.bias.seed + k,
            "eval.world.seed": cfg.eval.world.seed + k, "eval.glue.seed": cfg.eval.glue.seed + k}


def config_values(cfg: StudyConfig, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's params as dotted config values: a `sets` factor becomes the values its choice sets, a replicate the
    seed shift; every other param is a config path already."""
    space = cfg.search.space if cfg.search is not None else {}
    values: dict[str, Any] = {}
    for key, value in params.items():
        spec = space.get(key)
        if key == REPLICATE:
            values.update(seed_shift(cfg, int(value)))
        elif spec is not None and spec.sets is not None:
            values.update(spec.sets[str(value)])
        else:
            values[key] = value
    return values


def with_params(cfg: StudyConfig, params: dict[str, Any]) -> StudyConfig:
    """The config with sampled values at their dotted paths (a trial's config), validated."""
    raw = cfg.model_dump(mode="json")
    for key, value in config_values(cfg, params).items():
        set_path(raw, key, value)
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_error(err)) from None
