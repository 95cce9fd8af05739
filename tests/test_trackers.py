"""Experiment trackers: tiny digits runs with logger=tensorboard and logger=mlflow, read back
with TensorBoard's EventAccumulator and MLflow's client; a missing package is one line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from transferlab.core.errors import ConfigError
from transferlab.tasks import run_training, trackers
from transferlab.tasks.tracker_images import CONFUSION_FILE

# one short epoch on a few batches (the plumbing, not the accuracy)
TINY = ("debug=limit", "trainer.max_epochs=1", "print_config=false")


def _event_accumulator(folder: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return events


def _hparams(events) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    return {key: getattr(value, value.WhichOneof("kind")) for key, value in info.hparams.items()}


def test_tensorboard_run_logs_curves_hparams_and_confusion_matrix(make_cfg, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    record = run_training(make_cfg("logger=tensorboard", *TINY), tmp_path)
    events = _event_accumulator(tmp_path / "tensorboard")
    tags = events.Tags()
    assert {"train/loss", "val/acc", "test/acc"} <= set(tags["scalars"])
    assert "test/confusion_matrix" in tags["images"]
    (image,) = events.Images("test/confusion_matrix")
    assert image.width > 100 and image.height > 100
    # the final metrics beside the hyperparameters (TensorBoard's HParams tab)
    (final,) = events.Scalars("hp/test/acc")
    assert final.value == pytest.approx(record["metrics"]["test/acc"])
    assert "hp/val/acc_best" in tags["scalars"]
    hparams = _hparams(events)
    assert hparams["strategy/name"] == "finetune" and hparams["data/dataset"] == "digits"
    assert hparams["strategy/optimizer/lr"] == pytest.approx(
        record["config"]["strategy"]["optimizer"]["lr"]
    )
    assert (tmp_path / CONFUSION_FILE).is_file()


def test_mlflow_run_logs_params_metrics_and_results_to_sqlite(make_cfg, tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    cfg = make_cfg("logger=mlflow", f"paths.root_dir={tmp_path}", *TINY, out=tmp_path / "run")
    record = run_training(cfg, tmp_path / "run")
    database = tmp_path / "mlruns.db"
    assert database.is_file()  # a real SQLite file, no server
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    experiment = client.get_experiment_by_name("transferlab")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "finetune-small_cnn-digits-seed0"
    params = run.data.params
    assert params["strategy/name"] == "finetune" and params["seed"] == "0"
    assert float(params["strategy/optimizer/lr"]) == pytest.approx(
        record["config"]["strategy"]["optimizer"]["lr"]
    )
    metrics = run.data.metrics
    assert metrics["test/acc"] == pytest.approx(record["metrics"]["test/acc"])
    assert metrics["val/acc_best"] == pytest.approx(record["metrics"]["val/acc_best"])
    assert client.get_metric_history(run.info.run_id, "train/loss")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "results.json" in artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "images")} == {
        f"images/{CONFUSION_FILE}"
    }
    local = Path(client.download_artifacts(run.info.run_id, "results.json", str(tmp_path)))
    assert json.loads(local.read_text())["run_hash"] == record["run_hash"]


def test_tensorboard_gets_reconstruction_and_gan_sample_grids(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger

    grid = np.zeros((20, 30, 3), dtype=np.uint8)
    for name in ("reconstructions.png", "samples.png"):
        Image.fromarray(grid).save(tmp_path / name)
    results = tmp_path / "results.json"
    results.write_text("{}")
    record = {"config": {"seed": 0}, "metrics": {"test/fid": 12.5}, "epochs_trained": 2}
    logger = TensorBoardLogger(str(tmp_path / "tb"), name=None, version="", default_hp_metric=False)
    trackers.publish_run([logger], record, results)
    tags = _event_accumulator(tmp_path / "tb").Tags()
    assert {"train/reconstructions", "train/gan_samples"} <= set(tags["images"])
    assert "hp/test/fid" in tags["scalars"]


def test_a_csv_logger_alone_gets_no_images_drawn(tmp_path: Path) -> None:
    """The default logger takes no finished run, so nothing is drawn for it (matplotlib's
    import and the drawing are about a second of every run)."""
    from lightning.pytorch.loggers import CSVLogger

    results = tmp_path / "results.json"
    results.write_text("{}")
    record = {"test_details": {"confusion_matrix": [[3, 1], [0, 4]]}, "config": {"seed": 0}}
    trackers.publish_run([CSVLogger(str(tmp_path), name="csv")], record, results)
    assert not (tmp_path / CONFUSION_FILE).exists()


def test_missing_tracker_package_is_one_line_naming_the_extra(monkeypatch, make_cfg) -> None:
    monkeypatch.setattr(trackers, "_installed", lambda modules: False)
    for name in ("tensorboard", "mlflow"):
        with pytest.raises(ConfigError) as err:
            trackers.build_loggers(make_cfg(f"logger={name}").logger)
        message = str(err.value)
        assert "\n" not in message and f"transferlab[{name}]" in message, message


def test_bad_logger_setting_is_one_line(make_cfg) -> None:
    pytest.importorskip("mlflow")
    cfg = make_cfg("logger=mlflow", "+logger.mlflow.colour=red")
    with pytest.raises(ConfigError, match="invalid logger.mlflow settings") as err:
        trackers.build_loggers(cfg.logger)
    assert "\n" not in str(err.value)


def test_relative_sqlite_uri_becomes_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        trackers._absolute_sqlite("sqlite:///sub/mlruns.db")
        == f"sqlite:///{tmp_path}/sub/mlruns.db"
    )
    assert (tmp_path / "sub").is_dir()
    assert trackers._absolute_sqlite("http://localhost:5000") == "http://localhost:5000"
