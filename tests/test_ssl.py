"""Self-supervised sources (source=ssl): the methods' steps, the two views, the kNN probe, the
cached source and a linear probe on it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import compose_config, drop_stale_log_handlers
from torch.utils.data import DataLoader, TensorDataset

from transferlab.commands import main as commands_main
from transferlab.core.errors import ConfigError
from transferlab.core.store import config_hash
from transferlab.models import build_backbone
from transferlab.modules.ssl import SSL_METHODS, SSLModule, TwoViewAugment, knn_accuracy
from transferlab.sources import ensure_cached_source, make_source, prepare_backbone
from transferlab.sources.unlabelled import pretraining_pool
from transferlab.tasks import run_training, to_plain

pytest.importorskip("lightly")

DIGITS_SPEC = {"channels": 1, "image_size": 8, "normalize": "data"}
SSL_OVERRIDES = ("source=ssl", "source.max_epochs=2", "source.batch_size=64")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """The normalised training images of digits 0-4 (the default source classes)."""
    tmp = tmp_path_factory.mktemp("digits")
    source = to_plain(compose_config("train", SSL_OVERRIDES, tmp, tmp))["source"]
    return pretraining_pool(source, DIGITS_SPEC).train


class EpochLosses(L.Callback):
    """The mean training loss of every epoch."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.losses.append(float(trainer.callback_metrics["train/ssl_loss"]))


# ----------------------------------------------------------------------------- methods


# the fast run covers each kind of method (contrastive, momentum encoder, memory bank); the
# others (about 10-13 s each on 2 cores) run with the slow tests
FAST_SSL_METHODS = ("simclr", "byol", "moco")


@pytest.mark.parametrize(
    "method",
    [
        name if name in FAST_SSL_METHODS else pytest.param(name, marks=pytest.mark.slow)
        for name in SSL_METHODS.names()
    ],
)
def test_each_method_lowers_its_loss_on_digits(method: str, digits: torch.Tensor) -> None:
    torch.manual_seed(0)
    backbone = build_backbone("small_cnn", in_chans=1, input_size=8, width=8, feature_dim=32)
    module = SSLModule(backbone, method, projection_dim=32, hidden_dim=64, memory_bank_size=256)
    losses = EpochLosses()
    trainer = L.Trainer(
        max_epochs=8,
        logger=False,
        callbacks=[losses],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(digits), batch_size=128, shuffle=True, drop_last=True)
    trainer.fit(module, loader)
    # MoCo's first epoch is easier than the next ones: its keys come from a momentum encoder
    # still equal to the online one, against a bank that starts with random keys
    first = losses.losses[1 if module.method.memory_bank else 0]
    assert losses.losses[-1] < first, f"{method}: {losses.losses}"
    if SSL_METHODS.get(method).momentum:  # the momentum encoder moved, without gradients
        assert module.momentum_encoder is not None
        assert not any(p.requires_grad for p in module.momentum_encoder.parameters())
        online = dict(module.backbone.named_parameters())
        moved = module.momentum_encoder[0].state_dict()
        assert any(not torch.equal(online[k], moved[k]) for k in online)


@pytest.mark.parametrize(
    ("name", "size"),
    [("small_cnn", 8), ("resnet8", 8), ("resnet18", 8), ("efficientnet_lite0", 32)],
)
def test_heads_sit_on_any_backbones_pooled_features(name: str, size: int) -> None:
    backbone = build_backbone(name, in_chans=1, input_size=size)
    module = SSLModule(backbone, "byol", projection_dim=16, hidden_dim=32)
    loss = module.ssl_loss(torch.randn(4, 1, size, size))
    loss.backward()
    assert torch.isfinite(loss) and module.projection(
        backbone(torch.randn(2, 1, size, size))
    ).shape == (2, 16)


def test_two_views_draw_per_image_and_keep_the_shape() -> None:
    torch.manual_seed(0)
    same = torch.randn(1, 1, 28, 28).repeat(16, 1, 1, 1)
    views = TwoViewAugment()(same)
    assert views.shape == same.shape and torch.isfinite(views).all()
    assert len({tuple(v.flatten()[:50].tolist()) for v in views}) == 16  # one draw per image
    blur_only = TwoViewAugment(min_scale=1.0, hflip=False, jitter=0.0, blur_prob=1.0)
    flat = torch.full((2, 1, 8, 8), 3.0)
    assert torch.allclose(blur_only._blur(flat), flat)  # a blur keeps a constant image
    with pytest.raises(ConfigError, match="min_scale must be in"):
        TwoViewAugment(min_scale=1.5)


def test_knn_accuracy_votes_by_weighted_similarity() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    queries = torch.tensor([[1.0, 0.05], [0.1, 1.0], [0.6, 0.8]])
    # k=1: nearest by cosine -> 0, 1, and [0.6, 0.8] is closer to [0, 1] (0.8) than to
    # [0.9, 0.1] (0.60) -> 1
    assert knn_accuracy(bank, labels, queries, torch.tensor([0, 1, 1]), k=1) == 1.0
    # k=3 at temperature 1: the query [0.6, 0.8] gets 0 votes e^0.6 + e^0.62 against e^0.8
    assert knn_accuracy(bank, labels, queries[2:], torch.tensor([0]), k=3, temperature=1.0) == 1.0


def test_missing_lightly_is_one_line_with_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lightly", None)
    backbone = build_backbone("small_cnn", in_chans=1, input_size=8)
    with pytest.raises(ConfigError) as info:
        SSLModule(backbone, "simclr")
    assert str(info.value) == "source=ssl needs the lightly library: pip install -e '.[ssl]'"


# ----------------------------------------------------------------------------- the source


def _ssl_source(make_cfg, *extra: str) -> tuple[dict, dict]:
    plain = to_plain(make_cfg(*SSL_OVERRIDES, *extra))
    return plain["source"], plain["model"]


def test_source_is_built_once_then_reused(make_cfg) -> None:
    source, model = _ssl_source(make_cfg, "source.method=simsiam")
    entry, _ = ensure_cached_source(source, model, DIGITS_SPEC)
    meta = json.loads((entry / "source.json").read_text())
    assert entry.name.startswith("ssl-") and meta["method"] == "simsiam"
    assert meta["classes_seen"] == [0, 1, 2, 3, 4] and meta["data"] == "source"
    assert len(meta["knn_acc_per_epoch"]) == 2 and meta["knn_acc"] == meta["knn_acc_per_epoch"][-1]
    assert 0.5 < meta["knn_acc"] <= 1.0 and 0 < meta["knn_acc_init"] <= 1.0
    stamp = (entry / "backbone.safetensors").stat().st_mtime_ns
    backbone, info = prepare_backbone(source, model, DIGITS_SPEC)
    assert info["source"] == "ssl" and info["source_built_now"] is False
    assert Path(info["source_dir"]) == entry and info["source_knn_acc"] == meta["knn_acc"]
    assert (entry / "backbone.safetensors").stat().st_mtime_ns == stamp
    assert backbone.name == "small_cnn"


def test_source_key_follows_what_builds_the_weights(make_cfg) -> None:
    def key(*extra: str) -> str:
        source, model = _ssl_source(make_cfg, *extra)
        return config_hash(make_source(source).identity(model, DIGITS_SPEC))

    base = key()
    assert key("source.knn_k=5") == base  # the probe does not change the weights
    assert key("seed=3") == base  # data=source: the run seed does not matter
    assert key("source.method=byol") != base
    assert key("source.augment.min_scale=0.5") != base
    pool = key("source.data=target_pool")
    assert pool != base and key("source.data=target_pool", "source.classes=[0]") == pool
    assert key("source.data=target_pool", "seed=3") != pool  # its validation carve moves


def test_target_pool_never_uses_target_validation_or_test_images(make_cfg) -> None:
    source, _ = _ssl_source(make_cfg, "source.data=target_pool", "data.val_per_class=20")
    pool = pretraining_pool(source, DIGITS_SPEC)
    # digits 5-9 have 597 training-pool images; 5 x 20 are the target's validation split
    assert pool.info["classes_seen"] == [5, 6, 7, 8, 9]
    assert len(pool.train) + len(pool.held) == 497 and len(pool.held_labels) == len(pool.held)


def test_unknown_method_lists_the_valid_ones(make_cfg) -> None:
    source, model = _ssl_source(make_cfg, "source.method=dino")
    with pytest.raises(ConfigError) as info:
        ensure_cached_source(source, model, DIGITS_SPEC)
    assert str(info.value) == (
        "unknown source.method 'dino'; valid: barlowtwins, byol, moco, simclr, simsiam, vicreg"
    )


def test_linear_probe_on_an_ssl_source_runs_end_to_end(make_cfg, tmp_path) -> None:
    cfg = make_cfg(
        *SSL_OVERRIDES,
        "source.method=byol",
        "source.data=target_pool",
        "strategy=finetune",
        "strategy.mode=linear_probe",
        "trainer.max_epochs=3",
    )
    record = run_training(cfg, tmp_path)
    assert 0.0 <= record["metrics"]["test/acc"] <= 1.0
    info = record["source_info"]
    assert info["source"] == "ssl" and info["source_method"] == "byol"
    assert 0 < info["source_knn_acc"] <= 1.0 and info["source_classes_seen"] == [5, 6, 7, 8, 9]


def test_rank_scores_an_ssl_source_without_a_head(tmp_path, source_cache) -> None:
    drop_stale_log_handlers()
    ssl = "ssl:source.method=simclr,source.max_epochs=2,source.batch_size=64"
    args = ["--source", "random", "--source", ssl, "--out", str(tmp_path / "rank")]
    assert commands_main(["rank", f"paths.cache_dir={source_cache}", *args]) == 0
    record = json.loads((tmp_path / "rank" / "ranking.json").read_text())
    row = next(r for r in record["sources"] if r["source"] == ssl)
    assert set(row["scores"]) == {"logme", "hscore", "hscore_shrinkage"}
    assert "LEEP, NCE skipped: source=ssl has no classifier" in row["notes"][0]


def test_ssl_strategy_probes_the_ssl_source_and_refuses_another(make_cfg, tmp_path) -> None:
    cfg = make_cfg("strategy=ssl", *SSL_OVERRIDES, "source.method=simsiam")
    assert cfg.source.name == "ssl" and cfg.strategy.mode == "linear_probe"
    record = run_training(cfg, tmp_path / "ssl")
    assert record["source_info"]["source"] == "ssl"
    assert record["identity"]["strategy"] == "ssl" and record["identity"]["mode"] == "linear_probe"
    assert 0.0 <= record["metrics"]["test/acc"] <= 1.0
    wrong = make_cfg("strategy=ssl", "source=pretrain", "debug=fast_dev_run")
    with pytest.raises(ConfigError, match="transfers from source=ssl, but source=pretrain"):
        run_training(wrong, tmp_path / "wrong")
