"""Each strategy's step and freezing policy, on real digits batches."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from transferlab.core.errors import ConfigError
from transferlab.data import ImageClassificationDataModule
from transferlab.models import build_backbone
from transferlab.modules import FinetuneModule, ScratchModule, build_strategy
from transferlab.modules.freezing import count_frozen
from transferlab.modules.optim import build_optimizer, build_scheduler
from transferlab.tasks.classify import source_kind_for


@pytest.fixture(scope="module")
def digits() -> ImageClassificationDataModule:
    dm = ImageClassificationDataModule(
        dataset="digits",
        classes=[5, 6, 7, 8, 9],
        labels_per_class=20,
        val_per_class=10,
        batch_size=32,
    )
    dm.setup("fit")
    return dm


def _fit(module: L.LightningModule, dm: ImageClassificationDataModule, epochs: int = 2) -> None:
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, dm)


def _backbone(name: str = "small_cnn"):
    return build_backbone(name, in_chans=1, input_size=8)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before: dict, module: torch.nn.Module, prefix: str = "") -> set[str]:
    after = module.state_dict()
    return {k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])}


def test_linear_probe_leaves_every_backbone_weight_unchanged(digits) -> None:
    module = FinetuneModule(
        _backbone("resnet8"),
        digits.num_classes,
        mode="linear_probe",
        optimizer={"name": "adamw", "lr": 1e-2, "weight_decay": 0.1},
    )
    backbone_before, head_before = _snapshot(module.backbone), _snapshot(module.head)
    _fit(module, digits)
    assert not _changed(backbone_before, module.backbone)  # weights and BatchNorm statistics
    assert _changed(head_before, module.head)


@pytest.mark.parametrize("freeze", [1, 2])
def test_partial_freezes_exactly_the_stated_stages(digits, freeze: int) -> None:
    backbone = _backbone("resnet8")
    module = FinetuneModule(
        backbone,
        digits.num_classes,
        mode="partial",
        freeze_stages=freeze,
        optimizer={"name": "sgd", "lr": 0.05},
    )
    stages = backbone.stages()
    before = [_snapshot(stage) for stage in stages]
    _fit(module, digits)
    for index, stage in enumerate(stages):
        changed = _changed(before[index], stage)
        if index < freeze:
            assert not changed, f"frozen stage {backbone.stage_names[index]} changed: {changed}"
        else:
            assert changed, f"stage {backbone.stage_names[index]} did not train"


def test_frozen_batchnorm_stays_in_eval_mode(digits) -> None:
    module = FinetuneModule(
        _backbone("resnet8"), digits.num_classes, mode="partial", freeze_stages=2
    )
    module.apply_freezing(0)
    module.train()
    stages = module.backbone.stages()
    assert all(not m.training for s in stages[:2] for m in s.modules())
    assert all(m.training for s in stages[2:] for m in s.modules())


def test_lp_ft_and_gradual_schedules() -> None:
    backbone = _backbone()
    n = len(backbone.stages())
    lp_ft = FinetuneModule(backbone, 5, mode="lp_ft", lp_epochs=3)
    assert [lp_ft.frozen_stages_at(e) for e in range(5)] == [n, n, n, 0, 0]
    gradual = FinetuneModule(_backbone(), 5, mode="gradual", unfreeze_every=2)
    schedule = [gradual.frozen_stages_at(e) for e in range(2 * n + 2)]
    assert schedule[0] == n and schedule[-1] == 0
    assert all(a >= b for a, b in zip(schedule, schedule[1:]))


def test_lp_ft_unfreezes_after_probe_epochs(digits) -> None:
    probe_only = FinetuneModule(_backbone(), digits.num_classes, mode="lp_ft", lp_epochs=1)
    before = _snapshot(probe_only.backbone)
    _fit(probe_only, digits, epochs=1)
    assert not _changed(before, probe_only.backbone)
    then_full = FinetuneModule(_backbone(), digits.num_classes, mode="lp_ft", lp_epochs=1)
    then_full.backbone.load_state_dict(before)
    _fit(then_full, digits, epochs=2)
    assert then_full.num_frozen == 0 and _changed(before, then_full.backbone)


def test_backbone_gets_the_smaller_learning_rate() -> None:
    module = FinetuneModule(
        _backbone(), 5, mode="full", backbone_lr_ratio=0.1, optimizer={"name": "sgd", "lr": 0.5}
    )
    optimizer = build_optimizer(module.parameter_groups(), module.optimizer_cfg)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"backbone": pytest.approx(0.05), "head": pytest.approx(0.5)}


@pytest.mark.parametrize("name", ["cosine", "onecycle", "step", "none"])
def test_schedulers_build_and_step(name: str) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer([{"params": [param]}], {"name": "adam", "lr": 0.1})
    scheduler = build_scheduler(
        optimizer, {"name": name, "warmup_epochs": 1, "step_epochs": 1}, 20, 5
    )
    for _ in range(20):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] <= 0.1 + 1e-9


def test_bad_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="valid: sgd, adam, adamw"):
        build_optimizer([], {"name": "lion"})
    with pytest.raises(ConfigError, match="valid: full, linear_probe"):
        FinetuneModule(_backbone(), 5, mode="half")
    with pytest.raises(ConfigError, match="freeze_stages=9"):
        FinetuneModule(_backbone(), 5, mode="partial", freeze_stages=9)
    with pytest.raises(ConfigError, match=r"unknown strategy 'magic'; valid: .*finetune.*scratch"):
        build_strategy({"name": "magic"}, _backbone(), 5)


def test_finetune_without_source_suggests_scratch() -> None:
    cfg = {"strategy": {"name": "finetune"}, "source": {"name": "none"}}
    with pytest.raises(ConfigError, match="strategy=scratch"):
        source_kind_for(cfg)
    assert (
        source_kind_for({"strategy": {"name": "scratch"}, "source": {"name": "pretrain"}}) == "none"
    )


def test_scratch_step_learns(digits) -> None:
    torch.manual_seed(0)
    module = ScratchModule(_backbone(), digits.num_classes, optimizer={"name": "adam", "lr": 3e-3})
    images, labels = next(iter(digits.train_dataloader()))
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(module(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


class _FrozenCounts(L.Callback):
    """Records how many stages are frozen at the start of every training epoch."""

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.counts.setdefault(trainer.current_epoch, count_frozen(module.backbone.stages()))


def test_gradual_unfreezing_survives_resume(digits, tmp_path) -> None:
    def run(epochs: int, ckpt: str | None = None, folder: str = "a") -> _FrozenCounts:
        torch.manual_seed(0)
        module = FinetuneModule(
            _backbone("resnet8"), digits.num_classes, mode="gradual", unfreeze_every=1
        )
        counts = _FrozenCounts()
        saver = ModelCheckpoint(dirpath=tmp_path / folder, save_last=True)
        trainer = L.Trainer(
            max_epochs=epochs,
            accelerator="cpu",
            logger=False,
            callbacks=[counts, saver],
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        trainer.fit(module, digits, ckpt_path=ckpt)
        return counts

    straight = run(5).counts
    run(2, folder="b")
    resumed = run(5, ckpt=str(tmp_path / "b" / "last.ckpt"), folder="b").counts
    assert straight == {0: 4, 1: 3, 2: 2, 3: 1, 4: 0}
    assert resumed == {e: straight[e] for e in (2, 3, 4)}


def test_transfer_stages_keeps_lower_stages_and_reinitialises_the_rest() -> None:
    torch.manual_seed(0)
    source = _backbone("resnet8")
    before = [_snapshot(stage) for stage in source.stages()]
    module = FinetuneModule(source, 5, transfer_stages=2)
    for index, stage in enumerate(module.backbone.stages()):
        changed = _changed(before[index], stage, prefix="")
        assert (not changed) if index < 2 else changed, module.backbone.stage_names[index]
    with pytest.raises(ConfigError, match="transfer_stages=7"):
        FinetuneModule(_backbone("resnet8"), 5, transfer_stages=7)


def test_test_time_flip_averages_the_logits_of_each_image_and_its_mirror_in_eval_only(
    digits,
) -> None:
    torch.manual_seed(0)
    module = build_strategy({"name": "scratch", "test_time_flip": True}, _backbone(), num_classes=5)
    images, _ = next(iter(digits.train_dataloader()))
    plain = lambda x: module.head(module.backbone(x))  # noqa: E731
    module.eval()
    with torch.no_grad():
        expected = (plain(images) + plain(images.flip(-1))) / 2
        assert torch.allclose(module(images), expected, atol=1e-6)
        assert not torch.allclose(module(images), plain(images), atol=1e-3)
        # a mirrored batch gets the same prediction, the point of the augmentation
        assert torch.allclose(module(images.flip(-1)), module(images), atol=1e-5)
        # pooled features (the frozen-feature cache) have nothing to mirror
        features = module.backbone(images)
        assert torch.equal(module(features), module.head(features))
    module.train()  # training sees each image once, as it is (batch statistics, no flip)
    with torch.no_grad():
        assert torch.equal(module(images), plain(images))
    off = build_strategy({"name": "scratch"}, _backbone(), num_classes=5)
    assert off.test_time_flip is False
