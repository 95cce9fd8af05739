"""Command-line entry points: ``train.py`` / ``transferlab-train`` and ``eval.py``."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from hydra.experimental.callback import Callback as HydraCallback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from transferlab.core.config import (
    CONFIG_GROUPS,
    available_options,
    config_dir,
    print_config_tree,
    register_resolvers,
    share_run_id,
)
from transferlab.core.console import configure_console
from transferlab.core.errors import (
    ConfigError,
    TransferlabError,
    storage_error,
    storage_line,
)
from transferlab.core.overrides import drop_inapplicable, expand_overrides, publish_inapplicable
from transferlab.core.results import (
    RESULTS_FILE,
    config_differences,
    describe_differences,
    path_keys,
    read_results,
    run_hash,
    run_identity,
    write_results,
)
from transferlab.core.schema import RunOptions, check_model, closest
from transferlab.core.store import ensure_writable_dir
from transferlab.tasks import run_evaluation, run_training, to_plain
from transferlab.tasks.checkpoints import load_training_checkpoint
from transferlab.tasks.distributed import (
    is_global_zero,
    launched_rank,
    processes_created_externally,
    rank_child_overrides,
)
from transferlab.tasks.resume import (
    REPLACEABLE_STATUSES,
    RunDirectoryError,
    check_fresh_directory,
    check_results_slot,
    choose_checkpoint,
    find_finished,
)

log = logging.getLogger("transferlab")
register_resolvers()

# groups a user picks on the command line (`model=resnet18`) and what the choice is called
_CHOOSABLE = {g: g for g in CONFIG_GROUPS if g not in ("hydra", "paths")}


def check_group_choices(overrides: Sequence[str]) -> None:
    """Reject an unknown ``group=option`` before Hydra does, with one line naming valid options."""
    for arg in overrides:
        if "=" not in arg or arg.startswith(("-", "hydra.")):
            continue
        key, value = arg.split("=", 1)
        key = key.lstrip("+~")
        if key.startswith("override "):
            key = key[len("override ") :]
        key = key.lstrip("/")
        if key not in _CHOOSABLE or value in ("", "null"):
            continue
        options = available_options(key)
        for choice in value.split(","):  # multirun sweeps: strategy=finetune,scratch
            if choice not in options:
                raise ConfigError(f"unknown {key} '{choice}'; valid: {', '.join(options)}")


# Hydra flags that take no value (others, e.g. --config-name X, leave the check to Hydra)
_PLAIN_FLAGS = ("-m", "--multirun")


def _first_values(overrides: Sequence[str]) -> list[str]:
    """The overrides with each sweep at its first value (``seed=0,1,2`` -> ``seed=0``); Hydra's
    own keys and sweeps without a first value (Optuna intervals) left out."""
    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except OverrideParseException as err:
        raise ConfigError(
            f"cannot read the overrides: {str(err).strip().splitlines()[0]}"
        ) from None
    single = []
    for override in parsed:
        if override.key_or_group.split(".")[0] == "hydra":
            continue
        if not override.is_sweep_override():
            single.append(override.input_line)
            continue
        try:
            first = next(iter(override.sweep_string_iterator()))
        except Exception:  # noqa: BLE001 - interval sweeps and the like have no first value
            continue
        single.append(f"{override.get_key_element()}={first}")
    return single


def check_override_keys(config_name: str, args: Sequence[str]) -> None:
    """Compose the config as Hydra will (sweeps at their first value) and turn a composition
    error into one line; a misspelt key (``trainer.max_epoch=3``) gets the closest real key."""
    if any(a.startswith("-") and a not in _PLAIN_FLAGS for a in args):
        return
    overrides = _first_values([a for a in args if not a.startswith("-")])
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            compose(config_name, overrides=overrides)
            return
        except Exception as err:  # noqa: BLE001 - composition fails in many types
            message = str(err).strip().splitlines()[0] if str(err).strip() else repr(err)
            key = message.split("'")[1] if message.startswith("Could not override '") else None
            if key is None:
                raise ConfigError(f"invalid override: {message[:300]}") from None
        parent = key.rpartition(".")[0]
        rest = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
        node = compose(config_name, overrides=rest)
        node = OmegaConf.select(node, parent) if parent else node
        keys = list(node.keys()) if isinstance(node, DictConfig) else []
    hint = closest(key, [f"{parent}.{k}" if parent else str(k) for k in keys])
    raise ConfigError(f"{key} is not a config key{hint}; to add a new key write +{key}=...")


def _output_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _print_summary(record: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    identity = record["identity"]
    title = (
        f"{identity['strategy']}"
        f"{'/' + identity['mode'] if identity.get('mode') else ''} {identity['model']} on "
        f"{identity['dataset']} (labels/class={identity['labels_per_class']}, "
        f"seed={identity['seed']})"
    )
    Console().print(f"target test metrics: {title}", soft_wrap=True)
    table = Table()
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in record["metrics"].items():
        if isinstance(value, float):
            table.add_row(key, f"{value:.4f}")
    table.add_row("wall time (s)", f"{record['wall_time_s']:.1f}")
    Console().print(table)


def _job_line(record: dict[str, Any], output_dir: Path) -> str:
    """One line for a finished multirun job: its number, overrides, status and metrics."""
    hydra_cfg = HydraConfig.get()
    metrics = record.get("metrics", {})
    shown = [
        f"{key} {metrics[key]:.4f}"
        for key in ("test/acc", "test/zsl_acc", "test/gzsl_h", "val/acc_best")
        if isinstance(metrics.get(key), float)
    ]
    return (
        f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): "
        f"{record.get('status', 'completed')}, {', '.join(shown) or 'no metrics'}, "
        f"{record.get('wall_time_s', 0.0):.1f} s -> {output_dir}"
    )


def _in_multirun() -> bool:
    return HydraConfig.get().mode == RunMode.MULTIRUN


def _sweep_dir() -> Path:
    return Path(HydraConfig.get().sweep.dir)


def _checks_directory() -> bool:
    """Whether this process checks the run directory: not a rank Lightning started by re-running
    the command (its rank 0 did, and is writing into the directory by then)."""
    return launched_rank() == 0 or processes_created_externally()


def _claim_run_directory(cfg: DictConfig, output_dir: Path) -> dict[str, Any] | None:
    """Bind ``output_dir`` to this configuration before anything is written there.

    With ``resume=true``: the finished record of this configuration in the sweep (or run)
    directory, to skip it; else ``None`` after pointing ``ckpt_path`` at the newest readable
    checkpoint of this configuration in the directory (if any). Another configuration's
    results or checkpoints in the directory are an error naming the differing keys, and so,
    without ``resume``, are any results or checkpoints of an earlier run: nothing is
    overwritten."""
    digest, plain, paths = run_hash(cfg), to_plain(cfg), path_keys(cfg)
    resume = bool(cfg.get("resume"))
    if resume:
        finished = find_finished(_sweep_dir() if _in_multirun() else output_dir, digest)
        if finished is not None:
            return read_results(finished)
    if _checks_directory():
        check_results_slot(output_dir, digest, plain, paths)
        if not resume:
            check_fresh_directory(output_dir, cfg.get("ckpt_path"))
    if not resume or cfg.get("ckpt_path") is not None:  # an explicit checkpoint wins
        return None
    point = choose_checkpoint(output_dir, digest, plain, paths)
    for note in point.notes:
        print(note)
    if point.checkpoint is not None:
        print(
            f"resuming the interrupted run from {point.checkpoint} "
            f"(epoch {point.epoch}, step {point.step})"
        )
        with open_dict(cfg):
            cfg.ckpt_path = str(point.checkpoint)
    return None


def _replaceable(output_dir: Path, digest: str) -> bool:
    """Whether a failure record may be written: no results there, or this configuration's
    unfinished ones."""
    path = output_dir / RESULTS_FILE
    if not path.exists():
        return True
    try:
        record = read_results(path)
    except (OSError, ValueError):
        return False
    return record.get("run_hash") == digest and record.get("status") in REPLACEABLE_STATUSES


def _record_failure(cfg: DictConfig, output_dir: Path, err: BaseException) -> None:
    """Write a ``failed`` results file so the sweep's report lists this run (never over another
    run's results, and never failing itself: the disk may be full)."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    record: dict[str, Any] = {
        "status": "failed",
        "task": cfg.get("task_name"),
        "error": f"{type(err).__name__}: {message}"[:500],
        "run_hash": run_hash(cfg),
        "metrics": {},
    }
    try:
        plain = to_plain(cfg)
        record["identity"] = run_identity(plain, {"source": plain["source"].get("name")})
        record["config"] = plain
    except Exception:  # the record of a failure must not fail itself
        pass
    if not _replaceable(output_dir, record["run_hash"]):
        return
    try:
        write_results(output_dir, record)
    except OSError as write_err:
        log.error("could not write the failure record in %s: %s", output_dir, write_err)


# the data keys that do not change which test images a checkpoint is evaluated on
_LOADER_ONLY_DATA_KEYS = (
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "download",
    "min_samples_per_epoch",
    "augment",
    "labels_per_class",
    "label_fraction",
    "val_per_class",
    "val_fraction",
)


def eval_data_differences(cfg: DictConfig) -> list[tuple[str, Any, Any]]:
    """``eval.py``: the ``data.*`` keys (those that decide the test images) in which the data
    evaluated differs from the data the checkpoint was trained on."""
    _, record = load_training_checkpoint(cfg.ckpt_path)
    trained = dict(record["cfg"].get("data") or {})
    given = {**trained, **(to_plain(cfg.get("data")) or {})}
    return [
        d
        for d in config_differences({"data": trained}, {"data": given})
        if d[0].split(".")[1] not in _LOADER_ONLY_DATA_KEYS
    ]


def _job_failed(output_dir: Path, err: BaseException) -> None:
    """Say (without ``error:``: the multirun's summary is the one error line) that a job
    failed, and remember why for the summary."""
    line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"job {output_dir.name} failed: {line}", file=sys.stderr)
    _JOB_ERRORS[str(output_dir.resolve())] = f"{type(err).__name__}: {line}"[:500]


def _drop_inapplicable_keys(cfg: DictConfig, output_dir: Path) -> None:
    """Drop the sweep-wide keys this job's options lack, with a note; the job's saved
    ``.hydra/config.yaml`` then holds what it ran (its run hash matches its results)."""
    hydra_cfg = HydraConfig.get()
    notes = drop_inapplicable(cfg, hydra_cfg.runtime.choices)
    for note in notes:
        print(note)
    saved = output_dir / str(hydra_cfg.output_subdir or ".hydra") / "config.yaml"
    if notes and saved.is_file():
        OmegaConf.save(cfg, saved)


def _guarded(
    task: Callable[[DictConfig, Path], dict[str, Any]], kind: str = "train"
) -> Callable[[DictConfig], Any]:
    def run(cfg: DictConfig) -> float | None:
        output_dir = _output_dir()
        multirun = _in_multirun()
        configure_console(quiet=multirun)
        data_differs: list[tuple[str, Any, Any]] = []
        _drop_inapplicable_keys(cfg, output_dir)
        try:
            check_model(RunOptions, "", to_plain(cfg))
            if multirun and kind == "train" and cfg.get("seed", 0) is None:
                raise ConfigError(
                    "seed=null in a multirun: unseeded repeats of one configuration cannot be "
                    "told apart in reports; sweep seeds instead (seed=0,1,2)"
                )
            done = _claim_run_directory(cfg, output_dir)
            if done is not None:
                print(f"skipped: this configuration already finished ({done.get('run_dir', '')})")
                return done.get("metrics", {}).get("val/acc_best")
            if is_global_zero():  # printed for single runs, saved for every run
                print_config_tree(
                    cfg,
                    save_to=output_dir / "config_tree.log",
                    show=bool(cfg.get("print_config", True)) and not multirun,
                )
            if kind == "eval":
                data_differs = eval_data_differences(cfg)
                if data_differs:
                    print(
                        "warning: evaluating on other data than the checkpoint was trained on: "
                        f"{describe_differences(data_differs)}; the results record lists "
                        "these keys under data_differs_from_training",
                        file=sys.stderr,
                    )
            record = task(cfg, output_dir)
            if not is_global_zero():  # a DDP rank > 0: rank 0 reports and writes results
                return None
            if kind == "eval":  # the record says which data it was measured on
                record = {
                    **record,
                    "run_hash": run_hash(cfg),
                    "data_differs_from_training": [d[0] for d in data_differs],
                }
                write_results(output_dir, record)
        except RunDirectoryError as err:  # another run's directory: write nothing into it
            if not multirun:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(1)
            _job_failed(output_dir, err)
            return None
        except TransferlabError as err:
            if not multirun:
                print(f"error: {err}", file=sys.stderr)
                sys.exit(1)
            _job_failed(output_dir, err)
            _record_failure(cfg, output_dir, err)
            return None
        except Exception as err:
            disk = storage_error(err)  # a full, read-only or protected disk: one line
            if not multirun:
                if disk is None:
                    raise
                where = "" if disk.filename else f"writing in {output_dir}"
                print(f"error: {storage_line(disk, where)}", file=sys.stderr)
                sys.exit(1)
            if disk is None:
                log.exception("run failed; the sweep goes on")
            _job_failed(output_dir, disk or err)
            _record_failure(cfg, output_dir, disk or err)
            return None
        if multirun:
            print(_job_line(record, output_dir))
        else:
            _print_summary(record)
            print(f"results: {output_dir / 'results.json'}")
        # the value a Hydra sweeper optimises: a validation metric, never a test metric
        return record["metrics"].get("val/acc_best")

    return run


# why each job of this process's multirun failed, by output directory (jobs run in this
# process; jobs of other processes are read from their results files)
_JOB_ERRORS: dict[str, str] = {}


def _job_dirs(sweep: Path, since: float) -> list[Path]:
    """The job directories of the multirun that started at ``since`` (Hydra writes each job's
    ``.hydra/config.yaml`` when the job starts)."""
    found = {p.parent.parent for p in sweep.rglob(".hydra/config.yaml")}
    return sorted(
        (d for d in found if (d / ".hydra" / "config.yaml").stat().st_mtime >= since - 1),
        key=lambda d: (len(d.parts), [int(x) if x.isdigit() else x for x in d.parts]),
    )


def _job_failure(job: Path, sweep: Path, since: float) -> str | None:
    """Why the job in ``job`` failed, or None when it finished (or was skipped as finished)."""
    job_cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
    digest = run_hash(job_cfg)
    results = job / RESULTS_FILE
    record = None
    if results.is_file() and results.stat().st_mtime >= since - 1:
        try:
            record = read_results(results)
        except (OSError, ValueError):
            return f"its {RESULTS_FILE} cannot be read"
    if record is not None and record.get("run_hash") in (digest, None):
        if record.get("status") == "failed":
            return str(record.get("error") or "failed")
        return None
    if job_cfg.get("resume") and find_finished(sweep, digest) is not None:
        return None  # skipped: this configuration had finished
    return _JOB_ERRORS.get(str(job.resolve())) or (
        f"it wrote no {RESULTS_FILE} (refused, killed or crashed: see its log in {job})"
    )


def _job_overrides(job: Path) -> list[str]:
    try:
        return [str(v) for v in OmegaConf.load(job / ".hydra" / "overrides.yaml")]
    except Exception:  # noqa: BLE001 - a label is a nicety
        return []


def _job_labels(jobs: Sequence[Path], sweep: Path) -> dict[Path, str]:
    """Each job's directory name with the overrides that tell it from the other jobs."""
    overrides = {job: _job_overrides(job) for job in jobs}
    shared = set.intersection(*(set(v) for v in overrides.values())) if len(jobs) > 1 else set()
    labels = {}
    for job, values in overrides.items():
        own = [v for v in values if v not in shared]
        name = str(job.relative_to(sweep))
        labels[job] = f"{name} ({' '.join(own)})" if own else name
    return labels


def _summary_table(jobs: Sequence[Path], labels: dict[Path, str], failed: dict[Path, str]) -> str:
    """One row per job: its label, status and test accuracy (from its results file)."""
    rows = []
    for job in jobs:
        try:
            record = read_results(job / RESULTS_FILE)
        except (OSError, ValueError):
            record = {}
        status = "failed" if job in failed else str(record.get("status", "?"))
        metrics = record.get("metrics", {})
        metric = next(
            (f"{k} {metrics[k]:.4f}" for k in ("test/acc", "test/zsl_acc") if k in metrics), ""
        )
        rows.append((labels[job], status, metric))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {label:<{width}}  {status:<10} {metric}" for label, status, metric in rows)


class MultirunSummary(HydraCallback):
    """Registered in ``conf/hydra/default.yaml``: after a multirun, one summary of its jobs.
    When any failed, it lists which and why (each failed job's ``results.json`` holds its
    error) and ends the command with exit status 1."""

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        _JOB_ERRORS.clear()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(str(config.hydra.sweep.dir))
        if not sweep.is_dir():
            return
        jobs = _job_dirs(sweep, self.started)
        failed = [(job, why) for job in jobs if (why := _job_failure(job, sweep, self.started))]
        labels = _job_labels(jobs, sweep)
        if jobs:
            print(_summary_table(jobs, labels, dict(failed)))
        if not failed:
            if jobs:
                print(f"multirun: all {len(jobs)} jobs finished ({sweep})")
                print(f"table with mean ± std over seeds: transferlab report {sweep}")
            return
        lines = [f"multirun: {len(failed)} of {len(jobs)} jobs failed ({sweep}):"]
        lines += [f"  job {labels[job]}: {why}" for job, why in failed]
        names = (
            "job"
            + ("s " if len(failed) > 1 else " ")
            + ", ".join(str(j.relative_to(sweep)) for j, _ in failed)
        )
        lines.append(
            f"error: {len(failed)} of {len(jobs)} jobs of the multirun failed ({names}): "
            f"{failed[0][1][:200]}"
        )
        print("\n".join(lines), file=sys.stderr)
        raise SystemExit(1)


class OutputDirCheck(HydraCallback):
    """Registered in ``conf/hydra/default.yaml``: before Hydra creates the run (or sweep)
    directory, make sure it can: a read-only or full root is one ``error:`` line and exit
    status 1, not Hydra's traceback."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output_dir(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_output_dir(config.hydra.sweep.dir)


_RUN_DIR_PLACES = "point TRANSFERLAB_ROOT (paths.root_dir) or hydra.run.dir at a writable directory"


def _check_output_dir(directory: Any) -> None:
    try:
        ensure_writable_dir(Path(str(directory)))
    except OSError as err:
        line = storage_line(err, "cannot write the run directory", writable=_RUN_DIR_PLACES)
        print(f"error: {line}", file=sys.stderr)
        raise SystemExit(1) from None


def _main(config_name: str, task: Callable[[DictConfig, Path], dict[str, Any]]) -> None:
    try:
        multirun = any(a in _PLAIN_FLAGS for a in sys.argv[1:])
        args, inapplicable = expand_overrides(config_name, sys.argv[1:], multirun)
        sys.argv[1:] = args
        publish_inapplicable(inapplicable)
        check_group_choices(sys.argv[1:])
        check_override_keys(config_name, sys.argv[1:])
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    share_run_id()  # the processes this command starts (workers, DDP ranks) use its run dir
    sys.argv += rank_child_overrides()
    kind = "eval" if config_name == "eval" else "train"
    app = hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(
        _guarded(task, kind)
    )
    app()


def train_main() -> None:
    """``python train.py [overrides]``: train and test one configuration (or a multirun)."""
    _main("train", run_training)


def eval_main() -> None:
    """``python eval.py ckpt_path=...``: evaluate a checkpoint on the target test split."""
    _main("eval", run_evaluation)
