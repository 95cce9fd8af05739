"""Benchmark settings and their presets (``tiny`` for CI, ``quick``, ``full``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from transferlab.core.errors import ConfigError


@dataclass(frozen=True)
class BenchSettings:
    """What the benchmark measures and how long.

    Throughput: ``warmup_steps`` untimed then ``train_steps`` timed optimizer steps per
    measurement, ``repeats`` alternating rounds (plain loop, our stack, our stack in bf16).
    ``accuracy_epochs`` > 0 runs the time-to-accuracy recipes; ``bf16_accuracy_epochs`` > 0
    trains ``bf16_accuracy_model`` with the first recipe in float32 and bf16-mixed.
    """

    models: tuple[str, ...] = ("small_cnn", "resnet8", "resnet18")
    batch_size: int = 256
    warmup_steps: int = 2
    train_steps: int = 20
    repeats: int = 3
    eval_batch_size: int = 512
    infer_batches: int = 10
    data_path_batches: int = 100
    # the data path again with inputs resized per batch to this size (3 channels; None: off)
    large_input_size: int | None = 224
    large_input_batches: int = 10
    bf16_models: tuple[str, ...] = ("resnet8", "resnet18")
    # per-model overrides of train_steps (resnet18 is ~40x slower than small_cnn per image)
    steps_override: dict[str, int] = field(default_factory=dict)
    # extra stack measurements (float32): name -> config overrides, e.g. channels_last; a
    # variant that does not change the model's memory format from the default is skipped
    perf_variants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # experiments timed to the accuracy targets; the first is also the bf16 accuracy recipe
    accuracy_recipes: tuple[str, ...] = ("fmnist_fast",)
    accuracy_targets: tuple[float, ...] = (0.90, 0.92)
    accuracy_epochs: int = 0
    accuracy_eval_every: int = 50
    bf16_accuracy_model: str = "resnet8"
    bf16_accuracy_epochs: int = 0
    labels_per_class: int | None = None  # null: the whole training pool
    dataset: str = "fashion_mnist"
    # extra overrides of the accuracy runs (the tiny preset shrinks them to digits)
    recipe_overrides: tuple[str, ...] = ()
    # the speed run: ``speedrun_recipe`` as shipped, once per seed, each in a fresh
    # ``transferlab-train`` process (so the time from process start counts start-up too)
    speedrun_recipe: str | None = None
    speedrun_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    speedrun_targets: tuple[float, ...] = (0.90, 0.93)
    speedrun_eval_every: int = 25
    # fresh processes timed importing the CLI (0: not measured)
    startup_repeats: int = 0
    # pretrained backbones timed in a plain loop (transferlab.bench.backbone_throughput):
    # feature extraction and training images/s per size and precision, channels_last
    backbones: tuple[str, ...] = ()
    backbone_sizes: tuple[int, ...] = (64,)
    backbone_precisions: tuple[str, ...] = ("fp32", "bf16")
    backbone_seconds: float = 3.0

    def steps_for(self, model: str) -> int:
        """Timed training steps for ``model``."""
        return int(self.steps_override.get(model, self.train_steps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# both memory formats as stack variants; a model's run skips the one its default
# (``perf.channels_last: auto``) already is
MEMORY_FORMATS = {
    "channels_last": ("perf.channels_last=true",),
    "nchw": ("perf.channels_last=false",),
}

PRESETS: dict[str, BenchSettings] = {
    # CI: every code path in seconds, on the embedded digits; the numbers mean nothing
    "tiny": BenchSettings(
        speedrun_recipe="fmnist_speedrun",
        speedrun_seeds=(0,),
        speedrun_eval_every=2,
        startup_repeats=1,
        models=("small_cnn",),
        dataset="digits",
        recipe_overrides=("data.dataset=digits", "data.val_per_class=10"),
        batch_size=32,
        warmup_steps=1,
        train_steps=2,
        repeats=1,
        eval_batch_size=64,
        infer_batches=2,
        data_path_batches=5,
        large_input_batches=2,
        bf16_models=("small_cnn",),
        perf_variants={"channels_last": ("perf.channels_last=true",)},
        accuracy_epochs=1,
        accuracy_eval_every=2,
        bf16_accuracy_model="small_cnn",
        bf16_accuracy_epochs=1,
        backbones=("efficientnet_lite0",),
        backbone_sizes=(32,),
        backbone_precisions=("fp32",),
        backbone_seconds=0.05,
    ),
    # a few minutes: ratios and bf16, no accuracy runs
    "quick": BenchSettings(
        train_steps=8,
        repeats=3,
        infer_batches=4,
        steps_override={"resnet18": 2},
        perf_variants=MEMORY_FORMATS,
    ),
    # the table in docs/benchmarks.md (625 s on the quiet 2-core development machine)
    "full": BenchSettings(
        train_steps=30,
        repeats=3,
        steps_override={"resnet8": 12, "resnet18": 3},
        perf_variants=MEMORY_FORMATS,
        infer_batches=6,
        accuracy_recipes=("fmnist_fast", "fmnist_fast_bf16"),
        accuracy_epochs=3,  # the recipes as shipped
        accuracy_eval_every=50,
        bf16_accuracy_epochs=1,
        backbones=("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
    ),
}


# the speed run's time to 90% / 93% (5 seeds), the CLI's start-up time and the per-job
# overhead of a run (what a sweep pays besides training): docs/benchmarks.md
PRESETS["speedrun"] = BenchSettings(
    models=(),
    bf16_models=(),
    data_path_batches=20,
    large_input_size=None,
    speedrun_recipe="fmnist_speedrun",
    startup_repeats=5,
)


def preset(name: str, **changes: Any) -> BenchSettings:
    """The preset ``name`` with ``changes`` applied (``None`` values are ignored)."""
    if name not in PRESETS:
        raise ConfigError(f"unknown benchmark preset '{name}'; valid: {', '.join(PRESETS)}")
    settings = replace(PRESETS[name], **{k: v for k, v in changes.items() if v is not None})
    if settings.speedrun_recipe:
        from transferlab.core.config import available_options

        experiments = available_options("experiment")
        if settings.speedrun_recipe not in experiments:
            speedruns = ", ".join(e for e in experiments if "speedrun" in e)
            raise ConfigError(
                f"unknown speed-run recipe '{settings.speedrun_recipe}': it names an "
                f"experiment file (conf/experiment/); speed-run recipes: {speedruns}"
            )
    return settings
