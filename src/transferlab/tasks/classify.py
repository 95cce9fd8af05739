"""The ``classify`` task: config -> data module + backbone (+ source) -> strategy module ->
Trainer -> results record. Runs every classifier strategy (finetune, scratch, autoencoder,
gan, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transferlab.core.errors import ConfigError
from transferlab.data.target import target_datamodule
from transferlab.modules import build_strategy, strategy_spec
from transferlab.modules.perf import apply_perf
from transferlab.modules.registry import check_strategy_config
from transferlab.modules.regularizers import NEEDS_HEAD, check_regularizer
from transferlab.modules.semisup import SemisupModule
from transferlab.sources import SOURCES, check_source_overlap, make_source
from transferlab.tasks.checkpoints import check_resume_checkpoint
from transferlab.tasks.context import RunContext, register_task
from transferlab.tasks.distributed import single_device_overrides
from transferlab.tasks.frozen_features import feature_cache_setting, use_feature_cache
from transferlab.tasks.semisup import semisup_data
from transferlab.tasks.wise import check_wise, wise_step


def source_kind_for(cfg: Mapping[str, Any]) -> str:
    """The source a run really uses: ``none`` for strategies that start from scratch."""
    spec = strategy_spec(str(cfg["strategy"]["name"]))
    kind = str(cfg["source"].get("name", "none")) if spec.uses_source else "none"
    if spec.uses_source and kind == "none":
        raise ConfigError(
            f"strategy={cfg['strategy']['name']} needs pretrained weights but source=none; "
            "use strategy=scratch for random initialisation, source=random for a frozen random-"
            "encoder control, or source=pretrain|imagenet|checkpoint"
        )
    if spec.required_source and kind not in (spec.required_source, "random"):
        name = cfg["strategy"]["name"]
        raise ConfigError(
            f"strategy={name} transfers from source={spec.required_source}, but source={kind}; "
            f"drop the source override, use source=random for the random-trunk control, or "
            f"strategy=finetune source={kind}"
        )
    return kind


def needs_source_head(strategy_cfg: Mapping[str, Any], kind: str) -> bool:
    """Whether the run's regulariser needs the source's classifier head (Co-Tuning); one line
    when ``source=<kind>`` can never hand one over."""
    if check_regularizer(strategy_cfg.get("regularizer"))[0] != "cotuning":
        return False
    if kind not in SOURCES or not SOURCES.get(kind).has_classifier_head:
        raise ConfigError(f"{NEEDS_HEAD}; source={kind} has no classifier head")
    return True


@register_task("classify")
def run_classify(ctx: RunContext) -> dict[str, Any]:
    """Train and test one classifier configuration; write ``results.json``."""
    plain = ctx.plain
    kind = source_kind_for(plain)
    check_strategy_config(plain["strategy"])
    feature_cache_setting(plain["strategy"])  # a bad strategy.feature_cache fails early
    wise_alphas = check_wise(plain["strategy"], kind)
    wants_head = needs_source_head(plain["strategy"], kind)
    ctx.seed_everything()
    trainer = ctx.trainer()  # bad trainer settings fail before a source is built
    if ctx.resume_from:  # a bad checkpoint fails before a source is built too
        check_resume_checkpoint(ctx.resume_from, plain)
    source = make_source(plain["source"] if kind != "none" else {"name": "none"})
    model_cfg = plain["model"]
    requirement = source.requirement.with_min_size(int(model_cfg.get("min_input_size", 1)))
    datamodule, spec = target_datamodule(plain["data"], ctx.seed, requirement)
    datamodule.check_class_count(2, "a classifier")
    overlap = check_source_overlap(source, datamodule)  # before any source is built
    backbone, source_info = source.prepare(model_cfg, spec)
    source_info = {**source_info, **overlap}
    extras = source.extras(source_info, backbone, spec)
    if wants_head:
        extras["source_head"] = source.classifier_head(source_info, backbone)
    ctx.seed_everything(verbose=False)  # the same head init and data order, cache warm or cold
    ctx.record.update(
        input_spec=dict(spec), source_info=source_info, preprocessing=datamodule.preprocessing()
    )
    module = build_strategy(
        plain["strategy"],
        backbone,
        datamodule.num_classes,
        class_names=datamodule.class_names,
        input_shape=spec.shape,
        extras=extras,
    )
    apply_perf(plain.get("perf"), module)
    if wants_head:  # Co-Tuning learns p(y_s | y_t) from the un-augmented training images
        module.training_batches = datamodule.loader(
            datamodule.train_set, datamodule.eval_batch_size, shuffle=False
        )
    # frozen epochs may read cached backbone features instead of images
    data, feature_cache = use_feature_cache(plain, trainer, module, datamodule, spec)
    extra: dict[str, Any] = {"feature_cache": feature_cache}
    if isinstance(module, SemisupModule):  # the unlabelled target pool beside the labels
        data, extra["unlabelled_pool"] = semisup_data(
            module, datamodule, plain["data"], ctx.seed, requirement
        )
    before_test = None
    if wise_alphas is not None:  # validated on images: the interpolated backbone is not cached
        step = wise_step(
            module,
            wise_alphas,
            lambda: ctx.trainer(with_callbacks=False, **single_device_overrides()),
            datamodule,
        )

        def before_test(best: str | None) -> None:
            extra["wise"] = step(best)

    metrics = ctx.fit_and_test(trainer, module, data, before_test=before_test, datamodule=data)
    if metrics is None:  # a DDP rank > 0
        return {}
    if "wise" in extra:  # the test ran with the interpolated weights, saved beside the best
        metrics["best_checkpoint"] = extra["wise"]["checkpoint"]
        metrics["wise/alpha"] = extra["wise"]["alpha"]
    details = dict(module.test_details) if "best_checkpoint" in metrics else {}
    return ctx.finish(source_info, metrics, trainer.current_epoch, details, extra)
