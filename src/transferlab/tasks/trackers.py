"""Experiment trackers (the ``logger`` config group): building them with one clear error when
their package is missing, and handing a finished run to them (:func:`publish_run`): the run's
config as hyperparameters, its final metrics, its images (confusion matrix, reconstructions,
GAN samples) and, for MLflow, ``results.json`` as an artifact.

TensorBoard and MLflow are imported only when a run uses them."""

from __future__ import annotations

import importlib.util
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException

from transferlab.core.errors import ConfigError
from transferlab.tasks.tracker_images import read_rgb, run_images

log = logging.getLogger(__name__)

# the last part of a logger's ``_target_`` -> (the module it imports, the pip extra with it)
TRACKER_PACKAGES = {
    "TensorBoardLogger": (("tensorboard", "tensorboardX"), "tensorboard"),
    "MLFlowLogger": (("mlflow",), "mlflow"),
    "mlflow_logger": (("mlflow",), "mlflow"),
}
# MLflow takes at most this many parameters per call and this many characters per value
_MLFLOW_BATCH = 100
_MLFLOW_VALUE_CHARS = 6000
# what a TensorBoard/MLflow parameter key may hold
_KEY_CHARS = re.compile(r"[^\w\-. /]")


def _installed(modules: tuple[str, ...]) -> bool:
    return any(importlib.util.find_spec(name) is not None for name in modules)


def check_tracker_packages(group: Mapping[str, Any] | None) -> None:
    """Raise a one-line :class:`ConfigError` naming the pip extra when a configured tracker's
    package is not installed."""
    for name, conf in (group or {}).items():
        if not isinstance(conf, Mapping) or "_target_" not in conf:
            continue
        needs = TRACKER_PACKAGES.get(str(conf["_target_"]).rsplit(".", 1)[-1])
        if needs is not None and not _installed(needs[0]):
            modules, extra = needs
            raise ConfigError(
                f"logger={name} needs the {modules[0]} package, which is not installed: "
                f'pip install "transferlab[{extra}]" (in a checkout: pip install -e ".[{extra}]" '
                "or bash scripts/setup.sh --dev)"
            )


def build_loggers(group: Mapping[str, Any] | None) -> list[Any]:
    """The Lightning loggers of the ``logger`` group (each entry with a ``_target_``); a missing
    package or bad setting is one :class:`ConfigError` line."""
    check_tracker_packages(group)
    loggers = []
    for name, conf in (group or {}).items():
        if not isinstance(conf, Mapping) or "_target_" not in conf:
            continue
        try:
            loggers.append(hydra.utils.instantiate(conf))
        except InstantiationException as err:
            cause = err.__cause__ or err
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            raise ConfigError(f"invalid logger.{name} settings: {first[:300]}") from None
    return loggers


def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///relative.db`` made absolute (against the working directory), its folder
    created: the database then stays where it was put whatever directory reads it later."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = Path(uri[len(prefix) :]).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return prefix + str(path)


def mlflow_logger(
    tracking_uri: str,
    experiment_name: str = "transferlab",
    run_name: str | None = None,
    artifact_location: str | None = None,
    tags: Mapping[str, Any] | None = None,
) -> Any:
    """Lightning's ``MLFlowLogger`` on ``tracking_uri`` (a local ``sqlite:///`` file needs no
    server), with absolute database and artifact paths and MLflow's set-up chatter quiet."""
    import mlflow  # noqa: F401 - configures its loggers on import: quieted below
    from lightning.pytorch.loggers import MLFlowLogger

    # the database set-up (when the client is made) logs a line per step at INFO
    for noisy in ("mlflow", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return MLFlowLogger(
        experiment_name=experiment_name,
        run_name=run_name,
        tracking_uri=_absolute_sqlite(tracking_uri),
        artifact_location=(
            Path(artifact_location).expanduser().resolve().as_uri() if artifact_location else None
        ),
        tags={str(k): str(v) for k, v in (tags or {}).items()} or None,
        log_model=False,
    )


def flat_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``config`` flattened to ``a/b/c`` keys; lists and None as strings."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = _KEY_CHARS.sub("_", f"{prefix}{key}")
        if isinstance(value, Mapping):
            flat.update(flat_params(value, f"{name}/"))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """The record's finite numeric metrics and its wall time."""
    metrics = {
        str(k): float(v)
        for k, v in (record.get("metrics") or {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    if isinstance(record.get("wall_time_s"), (int, float)):
        metrics["wall_time_s"] = float(record["wall_time_s"])
    return metrics


def _publish_tensorboard(
    logger: Any, record: Mapping[str, Any], images: dict[str, Path], _results: Path
) -> None:
    """Hyperparameters with the final metrics (``hp/<metric>``, TensorBoard's HParams tab) and
    the run's images."""
    metrics = {f"hp/{k}": v for k, v in final_metrics(record).items()}
    logger.log_hyperparams(flat_params(record.get("config") or {}), metrics=metrics or None)
    step = int(record.get("epochs_trained") or 0)
    for tag, path in images.items():
        logger.experiment.add_image(tag, read_rgb(path), global_step=step, dataformats="HWC")
    logger.finalize("success")


def _publish_mlflow(
    logger: Any, record: Mapping[str, Any], images: dict[str, Path], results: Path
) -> None:
    """The config as parameters (those Lightning did not log already), the metrics not logged
    during training, ``results.json`` and the images as artifacts."""
    from mlflow.entities import Metric, Param

    client, run_id = logger.experiment, logger.run_id
    logged = client.get_run(run_id).data
    params = [
        Param(key, str(value)[:_MLFLOW_VALUE_CHARS])
        for key, value in flat_params(record.get("config") or {}).items()
        if key not in logged.params
    ]
    now, step = int(time.time() * 1000), int(record.get("epochs_trained") or 0)
    metrics = [
        Metric(key, value, now, step)
        for key, value in final_metrics(record).items()
        if key not in logged.metrics
    ]
    for start in range(0, max(len(params), len(metrics)), _MLFLOW_BATCH):
        client.log_batch(
            run_id,
            params=params[start : start + _MLFLOW_BATCH],
            metrics=metrics[start : start + _MLFLOW_BATCH],
        )
    client.log_artifact(run_id, str(results))
    for path in images.values():
        client.log_artifact(run_id, str(path), "images")


# the trackers a finished run is handed to, by their Lightning logger's class name
PUBLISHERS: dict[str, Callable[[Any, Mapping[str, Any], dict[str, Path], Path], None]] = {
    "TensorBoardLogger": _publish_tensorboard,
    "MLFlowLogger": _publish_mlflow,
}


def publish_run(loggers: list[Any], record: Mapping[str, Any], results: Path) -> None:
    """Hand a finished run (its record and ``results.json`` at ``results``) to its trackers.
    A tracker that fails is a warning: the run's results are written by then. Loggers that take
    no finished run (the default CSV logger) are skipped, and with no other the images are not
    drawn (matplotlib's import and the drawing are about a second of a run's time)."""
    takers = [logger for logger in loggers if type(logger).__name__ in PUBLISHERS]
    if not takers:
        return
    images = run_images(record, results.parent)
    for logger in takers:
        kind = type(logger).__name__
        try:
            PUBLISHERS[kind](logger, record, images, results)
        except Exception as err:  # noqa: BLE001 - a tracker must not fail a finished run
            line = (str(err).strip().splitlines() or [type(err).__name__])[0]
            log.warning("could not hand the run to %s: %s", kind, line[:300])
