"""The ``zeroshot`` task (``strategy=zeroshot``): class split -> source backbone
(leakage-checked) -> features -> hyperparameters chosen on validation classes -> final fit on all
seen classes -> ZSL / GZSL test metrics -> results.json (the format every strategy writes)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import ModelCheckpoint

from transferlab.core.errors import ConfigError
from transferlab.core.specs import InputSpec
from transferlab.data.datasets import ImageData, load_dataset
from transferlab.modules.registry import STRATEGIES, StrategySpec
from transferlab.sources import make_source
from transferlab.tasks.context import RunContext, register_task
from transferlab.zeroshot.features import Preprocessor, extract_features
from transferlab.zeroshot.leakage import (
    check_source_config,
    check_source_record,
    restricted_source,
)
from transferlab.zeroshot.methods import (
    ClassSet,
    ZeroShotMethod,
    ZeroShotModule,
    build_method,
    method_class,
    method_options,
)
from transferlab.zeroshot.methods.module import ClosedFormModule
from transferlab.zeroshot.metrics import choose_gamma, gzsl_metrics, zsl_accuracy
from transferlab.zeroshot.semantics import DEFAULT_TEMPLATES, class_semantics
from transferlab.zeroshot.splits import ClassSplit, resolve_split, stage_indices

log = logging.getLogger(__name__)
STRATEGIES.register("zeroshot", StrategySpec(None, uses_source=True, task="zeroshot"))

# calibrated stacking: gamma = multiple * (std of the model's scores on its training inputs)
GAMMA_MULTIPLES = [round(0.05 * i, 2) for i in range(61)]
SELECT_BY = ("zsl_acc", "gzsl_h")
# fast_dev_run: a few images per class and a few optimisation steps
FAST = {"train": 20, "holdout": 10, "test": 20}
FAST_PARAMS = {"epochs": 1, "gan_steps": 2, "cls_epochs": 1, "syn_per_class": 10}


@dataclass
class Inputs:
    """Method inputs of one image set and the original class id of each."""

    x: torch.Tensor
    classes: torch.Tensor

    def of(self, class_ids: list[int]) -> Inputs:
        keep = torch.isin(self.classes, torch.as_tensor(class_ids))
        return Inputs(self.x[keep], self.classes[keep])

    def __add__(self, other: Inputs) -> Inputs:
        return Inputs(torch.cat([self.x, other.x]), torch.cat([self.classes, other.classes]))


def _device(plain: Mapping[str, Any]) -> str:
    accelerator = str(plain.get("trainer", {}).get("accelerator", "cpu"))
    wants_gpu = accelerator in ("gpu", "cuda", "auto")
    return "cuda" if wants_gpu and torch.cuda.is_available() else "cpu"


def _per_class_head(indices: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    keep = [indices[labels[indices] == c][:k] for c in labels[indices].unique()]
    return torch.cat(keep).sort().values


def method_grid(zs: Mapping[str, Any], method: str, fast: bool) -> list[dict[str, Any]]:
    """Every hyperparameter combination of ``strategy.<method>`` (list values are searched)."""
    from sklearn.model_selection import ParameterGrid  # here: sklearn is a 1 s import

    params = dict(zs.get(method) or method_class(method).default_grid)
    accepted = method_options(method)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(
            f"strategy.{method} has unknown option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    for key in method_class(method).list_options:  # one list each, not a grid
        params[key] = [list(params.get(key) or zs.get(key))]
    grid = list(ParameterGrid({k: v if isinstance(v, list) else [v] for k, v in params.items()}))
    if fast:
        grid = [{**grid[0], **{k: v for k, v in FAST_PARAMS.items() if k in accepted}}]
    return grid


Fit = Callable[[ZeroShotMethod, torch.Tensor, torch.Tensor, ClassSet, ClassSet], Any]


@contextmanager
def _lightning_banners_off() -> Iterator[None]:
    """No "GPU available" banner for each of the validation stage's many small fits."""
    loggers = [logging.getLogger(n) for n in ("lightning", "lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def make_fit(ctx: RunContext, final: bool) -> Fit:
    """How this run fits a method. A LightningModule fits under the run's trainer: a bare one
    (no checkpoints) for closed forms and the validation stage; for a gradient method's final
    stage, one that writes ``checkpoints/last.ckpt`` each epoch and continues from
    ``ckpt_path`` (``resume=true``). Methods not yet converted call their own ``fit``."""

    def fit(method: ZeroShotMethod, x: torch.Tensor, y: torch.Tensor, *classes: ClassSet) -> Any:
        if not isinstance(method, ZeroShotModule):
            return method.fit(x, y, *classes)
        if not final or isinstance(method, ClosedFormModule):
            quiet = {"enable_progress_bar": False, "enable_model_summary": False}
            with _lightning_banners_off():
                trainer = ctx.trainer(
                    with_callbacks=False,
                    max_epochs=method.epochs,
                    enable_checkpointing=False,
                    **quiet,
                )
                return method.fit(x, y, *classes, trainer=trainer)
        checkpoints = ModelCheckpoint(
            dirpath=ctx.output_dir / "checkpoints",
            filename="epoch_{epoch:03d}",
            save_last=True,
            auto_insert_metric_name=False,
        )
        trainer = ctx.trainer(callbacks=[checkpoints], max_epochs=method.epochs)
        method.fit(x, y, *classes, trainer=trainer, ckpt_path=ctx.resume_from)
        ctx.optimizer_steps = int(trainer.global_step)
        return method

    return fit


def _class_set(ids: list[int], names: list[str], semantics: torch.Tensor | None) -> ClassSet:
    return ClassSet([names[c] for c in ids], None if semantics is None else semantics[ids])


def evaluate_stage(
    method: ZeroShotMethod,
    train: Inputs,
    test: Inputs,
    seen: list[int],
    unseen: list[int],
    names: list[str],
    semantics: torch.Tensor | None,
    fit: Fit | None = None,
) -> dict[str, Any]:
    """Fit ``method`` on ``train`` (classes ``seen``; with ``fit``, default its own ``fit``) and
    score ``test`` (images of ``seen`` and ``unseen`` classes). Returns the score matrices,
    labels and score scale."""
    column = {c: i for i, c in enumerate(seen + unseen)}
    y_train = torch.as_tensor([column[int(c)] for c in train.classes], dtype=torch.long)
    classes = _class_set(seen, names, semantics), _class_set(unseen, names, semantics)
    (fit or type(method).fit)(method, train.x, y_train, *classes)
    y_test = torch.as_tensor([column[int(c)] for c in test.classes])
    is_unseen = y_test >= len(seen)
    scores = method.scores(test.x)
    if method.inputs == "raw" or len(train.x) == 0:  # nothing trained: the spread of test scores
        scale = float(scores.std())
    else:
        pick = torch.randperm(len(train.x), generator=torch.Generator().manual_seed(0))[:512]
        scale = float(method.scores(train.x[pick]).std())
    return {
        "scores": scores,
        "labels": y_test,
        "zsl_scores": method.zsl_scores(test.x[is_unseen]),
        "zsl_labels": y_test[is_unseen] - len(seen),
        "num_seen": len(seen),
        "scale": scale if scale > 0 else 1.0,
    }


def stage_metrics(stage: Mapping[str, Any], gamma_multiple: float) -> dict[str, float]:
    """ZSL accuracy and GZSL seen / unseen / H at calibration ``gamma_multiple``."""
    gamma = gamma_multiple * stage["scale"]
    return {
        "zsl_acc": zsl_accuracy(stage["zsl_scores"], stage["zsl_labels"]),
        **gzsl_metrics(stage["scores"], stage["labels"], stage["num_seen"], gamma),
    }


def best_gamma_multiple(stage: Mapping[str, Any], calibration: bool) -> float:
    """The calibration multiple with the best H on this (validation) stage; 0 when off."""
    if not calibration:
        return 0.0
    grid = [m * stage["scale"] for m in GAMMA_MULTIPLES]
    return choose_gamma(stage["scores"], stage["labels"], stage["num_seen"], grid) / stage["scale"]


class _InputMaker:
    """Turns image indices into method inputs: frozen features, preprocessed images or raw."""

    def __init__(
        self, data: ImageData, kind: str, backbone: Any, prepare: Any, device: str, l2: bool
    ) -> None:
        self.data, self.kind, self.backbone = data, kind, backbone
        self.prepare, self.device, self.l2 = prepare, device, l2

    def __call__(self, pool: str, indices: torch.Tensor) -> Inputs:
        images = getattr(self.data, f"{pool}_images")[indices]
        labels = getattr(self.data, f"{pool}_labels")[indices]
        if self.kind == "raw":
            return Inputs(images, labels)
        if self.kind == "images":
            return Inputs(self.prepare(images), labels)
        feats = extract_features(self.backbone, images, self.prepare, device=self.device)
        return Inputs(F.normalize(feats, dim=1) if self.l2 else feats, labels)


def _source_backbone(
    plain: Mapping[str, Any],
    data: ImageData,
    dataset: str,
    classes: list[int],
    never_seen: list[int],
    allow: bool,
) -> tuple[Any, dict[str, Any], InputSpec]:
    """The source backbone restricted to ``classes`` (a same-data-set ``pretrain`` source,
    unless ``strategy.restrict_source_to_seen=false``), checked never to have seen a class of
    ``never_seen``; its source record and input spec."""
    zs, data_cfg, model_cfg = plain["strategy"], plain["data"], plain["model"]
    source_cfg = restricted_source(
        plain["source"], dataset, classes, bool(zs.get("restrict_source_to_seen", True))
    )
    kind = str(source_cfg.get("name", "none"))
    if kind == "none":
        raise ConfigError(
            "strategy=zeroshot needs a backbone source: source=pretrain (trained on the seen "
            "classes only) or source=random (an untrained control)"
        )
    check_source_config(source_cfg, dataset, never_seen, data.class_names, allow)
    source = make_source(source_cfg)
    spec = source.requirement.with_min_size(int(model_cfg.get("min_input_size", 1))).resolve(
        data.channels,
        int(data_cfg.get("image_size") or data.image_hw[0]),
        data_cfg.get("normalize", "data"),
    )
    backbone, source_info = source.prepare(model_cfg, spec)
    verified = check_source_record(source_info, dataset, never_seen, data.class_names, allow)
    return backbone, {**source_info, "leakage_verified": verified}, spec


def _validation_backbone(
    plain: Mapping[str, Any],
    data: ImageData,
    dataset: str,
    split: ClassSplit,
    final: tuple[Any, dict[str, Any], InputSpec],
) -> tuple[Any, dict[str, Any]]:
    """The backbone of the validation stage: the source retrained on the seen classes minus
    the validation classes (Xian et al.'s protocol: the validation classes are unseen by the
    feature extractor too), when the source can be restricted; else the final backbone, with
    a record of whether it saw the validation classes."""
    zs, source = plain["strategy"], plain["source"]
    restrictable = (
        bool(zs.get("restrict_source_to_seen", True))
        and source.get("name") == "pretrain"
        and source.get("dataset") == dataset
    )
    if restrictable:
        backbone, info, _ = _source_backbone(
            plain, data, dataset, split.train, split.unseen + split.val, allow=False
        )
    else:
        backbone, info = final[0], final[1]
    seen = info.get("source_classes_seen")
    saw_val = None if seen is None else bool(set(seen) & set(split.val))
    record = {
        "source_key": info.get("source_key"),
        "classes_seen": seen,
        "retrained_without_val_classes": restrictable,
        "saw_val_classes": saw_val,
    }
    return backbone, record


def _budget(data_cfg: Mapping[str, Any]) -> tuple[int | None, float | None, int]:
    holdout = data_cfg.get("val_per_class") or 0
    if holdout < 1:
        raise ConfigError(
            "strategy=zeroshot needs data.val_per_class >= 1: held-out seen-class images for "
            "the validation stage (the test of choosing hyperparameters)"
        )
    return data_cfg.get("labels_per_class"), data_cfg.get("label_fraction"), int(holdout)


@register_task("zeroshot")
def run_zeroshot(ctx: RunContext) -> dict[str, Any]:
    """Run one zero-shot configuration and write ``results.json``."""
    ctx.seed_everything(verbose=False)
    plain = ctx.plain
    zs, data_cfg = plain["strategy"], plain["data"]
    method_name = str(zs.get("method"))
    method_cls = method_class(method_name)
    fast = bool(plain.get("trainer", {}).get("fast_dev_run"))
    grid = method_grid(zs, method_name, fast)
    select_by = str(zs.get("select_by", "zsl_acc"))
    if select_by not in SELECT_BY:
        raise ConfigError(
            f"strategy.select_by={select_by!r} is invalid; use {' or '.join(SELECT_BY)}"
        )
    device, allow = _device(plain), bool(zs.get("allow_unverified_source", False))
    dataset = str(data_cfg["dataset"]).strip().lower().replace("-", "_")
    data = load_dataset(
        dataset,
        root=data_cfg.get("root"),
        download=bool(data_cfg.get("download", True)),
        **(data_cfg.get("dataset_kwargs") or {}),
    )
    names = list(data.class_names)
    split = resolve_split(zs.get("split"), dataset, names)
    labels_per_class, label_fraction, holdout = _budget(data_cfg)
    idx = stage_indices(
        data.train_labels,
        data.test_labels,
        split,
        labels_per_class,
        label_fraction,
        holdout,
        ctx.split_seed,
        names,
    )
    if fast:
        idx.train = _per_class_head(idx.train, data.train_labels, FAST["train"])
        idx.holdout = _per_class_head(idx.holdout, data.train_labels, FAST["holdout"])
        idx.test = _per_class_head(idx.test, data.test_labels, FAST["test"])

    semantics, sem_info = None, {"semantics": "class names (prompts)"}
    if method_cls.uses_semantics:
        semantics, sem_info = class_semantics(
            str(zs.get("semantics", "attributes")),
            dataset,
            names,
            templates=zs.get("templates") or DEFAULT_TEMPLATES,
            text_model=zs.get("text_model"),
            descriptions=zs.get("descriptions"),
        )
        if zs.get("semantics_norm", "l2") == "l2":
            semantics = F.normalize(semantics, dim=1)

    backbone, val_backbone, prepare, val_record = None, None, None, None
    if method_cls.uses_source:
        final = _source_backbone(plain, data, dataset, split.seen, split.unseen, allow)
        backbone, source_info, spec = final
        val_backbone, val_record = _validation_backbone(plain, data, dataset, split, final)
        prepare = Preprocessor(data, spec)
    else:
        source_info = method_cls.source_info(dict(zs.get(method_name) or {}), allow)
    context = {"backbone": backbone, "device": device}
    val_context = {"backbone": val_backbone, "device": device}
    ctx.seed_everything(verbose=False)
    methods = [build_method(method_name, params, **val_context) for params in grid]
    kind = methods[0].inputs
    l2 = zs.get("feature_norm", "l2") == "l2"
    make = _InputMaker(data, kind, backbone, prepare, device, l2)
    make_val = _InputMaker(data, kind, val_backbone, prepare, device, l2)
    calibration = bool(zs.get("calibration", True))

    # validation stage: a backbone and a method that never saw the validation classes, trained
    # on the seen minus the validation classes, zero-shot on the validation classes
    val_train, holdout_set = make_val("train", idx.train), make_val("train", idx.holdout)
    candidates = []
    for params, method in zip(grid, methods):
        stage = evaluate_stage(
            method,
            val_train.of(split.train),
            holdout_set.of(split.train) + holdout_set.of(split.val),
            split.train,
            split.val,
            names,
            semantics,
            make_fit(ctx, final=False),
        )
        multiple = best_gamma_multiple(stage, calibration)
        candidates.append((params, multiple, stage_metrics(stage, multiple)))
        log.info("zeroshot %s %s: val %s", method_name, params, candidates[-1][2])
    best = max(range(len(candidates)), key=lambda i: (candidates[i][2][select_by], -i))
    params, multiple, val = candidates[best]

    # final stage: the backbone and method of all seen classes, tested on the test pool (seen
    # for GZSL, unseen); reseeded, so it starts alike however long the validation stage was
    ctx.seed_everything(verbose=False)
    final = build_method(method_name, params, **context) if method_cls.trains else methods[best]
    train, test = make("train", idx.train), make("test", idx.test)
    fit = make_fit(ctx, final=True) if method_cls.trains else None
    stage = evaluate_stage(final, train, test, split.seen, split.unseen, names, semantics, fit)
    result = stage_metrics(stage, multiple)
    plain_result = stage_metrics(stage, 0.0)
    metrics: dict[str, Any] = {f"test/{k}": v for k, v in result.items()}
    metrics.update(
        {f"test/{k}_uncalibrated": plain_result[k] for k in ("gzsl_seen", "gzsl_unseen", "gzsl_h")}
    )
    metrics.update({f"val/{k}": v for k, v in val.items()})
    metrics.update(
        {
            "test/acc": result["zsl_acc"],
            "test/acc_per_class_mean": result["zsl_acc"],
            "val/acc_best": val["zsl_acc"],
        }
    )
    zsl_pred = stage["zsl_scores"].argmax(dim=1)
    details = {
        "method": method_name,
        "split": split.as_dict(names),
        "semantics": sem_info,
        "chosen_params": params,
        "calibration_gamma_multiple": multiple,
        "calibration_gamma": multiple * stage["scale"],
        "validation": [{"params": p, "gamma_multiple": m, **v} for p, m, v in candidates],
        "validation_backbone": val_record,
        "zsl_acc_per_class": {
            names[c]: float(np.mean((zsl_pred == i)[stage["zsl_labels"] == i].numpy()))
            for i, c in enumerate(split.unseen)
        },
        "images": {"train": len(train.x), "holdout": len(holdout_set.x), "test": len(test.x)},
        "fast_dev_run": fast,
    }
    return ctx.finish(source_info, metrics, int(params.get("epochs", 0) or 0), details)
