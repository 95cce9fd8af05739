"""End-to-end: real training on offline data, resume, eval.py, and bad input at the CLI."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from conftest import run_cli

from transferlab.tasks import run_evaluation, run_training

NO_BAR = "trainer.enable_progress_bar=false"


def _results(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.glob("logs/**/results.json"))]


def test_default_train_py_runs_a_transfer_experiment_offline(tmp_path: Path) -> None:
    proc = run_cli("train.py", NO_BAR, root=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = _results(tmp_path)
    assert record["identity"]["strategy"] == "finetune"
    assert record["source_info"]["source"] == "pretrain"
    assert record["source_info"]["source_classes_seen"] == [0, 1, 2, 3, 4]
    assert record["test_details"]["class_names"] == ["5", "6", "7", "8", "9"]
    # 5 target classes: chance is 0.2
    assert record["metrics"]["test/acc"] > 0.7, record["metrics"]
    assert "test/acc" in proc.stdout and "target test metrics" in proc.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["model=resnet1000"], "unknown model 'resnet1000'; valid:"),
        (["data=imagenet21k"], "unknown data 'imagenet21k'; valid:"),
        (["data.labels_per_class=500"], "labels_per_class=500"),
        (["source=none"], "use strategy=scratch"),
        (["source=checkpoint", "source.path=/nowhere/x.ckpt"], "checkpoint not found"),
        (["strategy.mode=half"], "unknown finetune mode 'half'"),
    ],
)
def test_bad_input_exits_nonzero_with_one_line(tmp_path: Path, args, expected: str) -> None:
    proc = run_cli("train.py", NO_BAR, *args, "debug=fast_dev_run", root=tmp_path, timeout=300)
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-2000:]
    assert expected not in proc.stdout  # said once, not echoed by a logger
    assert "Traceback" not in proc.stderr
    assert not _results(tmp_path)


def test_resume_and_eval_reproduce_the_run(make_cfg, tmp_path: Path) -> None:
    full = run_training(make_cfg("trainer.max_epochs=4", out=tmp_path / "full"), tmp_path / "full")
    make_cfg("trainer.max_epochs=2", out=tmp_path / "cut")
    run_training(make_cfg("trainer.max_epochs=2", out=tmp_path / "cut"), tmp_path / "cut")
    last = tmp_path / "cut" / "checkpoints" / "last.ckpt"
    resumed = run_training(
        make_cfg("trainer.max_epochs=4", f"ckpt_path={last}", out=tmp_path / "cut"),
        tmp_path / "cut",
    )
    assert resumed["epochs_trained"] == full["epochs_trained"] == 4
    best = resumed["metrics"]["best_checkpoint"]
    evaluated = run_evaluation(
        make_cfg(f"ckpt_path={best}", name="eval", out=tmp_path / "ev"), tmp_path / "ev"
    )
    for key in ("test/acc", "test/acc_per_class_mean", "test/loss"):
        assert evaluated["metrics"][key] == pytest.approx(resumed["metrics"][key], abs=1e-6)
    assert (tmp_path / "ev" / "results.json").is_file()


def test_divergence_stops_with_one_clear_error(make_cfg, tmp_path: Path) -> None:
    from transferlab.core.errors import DivergenceError

    cfg = make_cfg(
        "strategy=scratch",
        "strategy.optimizer.name=sgd",
        "strategy.optimizer.lr=1e12",
        "trainer.max_epochs=3",
    )
    # the validation loss at the end of epoch 0 is already NaN: the run stops there
    with pytest.raises(
        DivergenceError, match=r"training diverged: the (validation )?loss.* is (nan|inf)"
    ):
        run_training(cfg, tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_deterministic_runs_give_identical_metrics(make_cfg, tmp_path: Path) -> None:
    records = [
        run_training(
            make_cfg(
                "trainer.deterministic=true",
                "trainer.max_epochs=5",
                "data.augment.crop_padding=1",
                out=tmp_path / name,
            ),
            tmp_path / name,
        )
        for name in ("first", "second")
    ]
    for key in ("val/acc_best", "test/acc", "test/loss"):
        assert records[0]["metrics"][key] == records[1]["metrics"][key]


def test_export_writes_safetensors_usable_as_a_source(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transferlab.commands import main
    from transferlab.tasks import export as export_module

    record = run_training(make_cfg("trainer.max_epochs=2", out=tmp_path / "run"), tmp_path / "run")
    out = tmp_path / "model.safetensors"
    assert main(["export", record["metrics"]["best_checkpoint"], "--out", str(out)]) == 0
    # --out an existing folder: <checkpoint name>.safetensors inside it, nothing else
    best, folder = Path(record["metrics"]["best_checkpoint"]), tmp_path / "exports"
    folder.mkdir()
    assert main(["export", str(best), "--out", str(folder)]) == 0
    assert [p.name for p in folder.iterdir()] == [f"{best.stem}.safetensors"]

    def full_disk(state, path: str, metadata=None) -> None:  # half a file, then ENOSPC
        Path(path).write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(export_module, "save_file", full_disk)
    assert main(["export", str(best), "--out", str(folder / "again.safetensors")]) == 2
    assert [p.name for p in folder.iterdir()] == [f"{best.stem}.safetensors"]  # no .tmp
    monkeypatch.undo()
    again = run_training(
        make_cfg(
            "source=checkpoint",
            f"source.path={out}",
            "trainer.max_epochs=1",
            out=tmp_path / "again",
        ),
        tmp_path / "again",
    )
    assert again["source_info"] == {"source": "checkpoint", "source_path": str(out)}
    assert main(["export", str(tmp_path / "missing.ckpt")]) == 2


def test_a_fit_that_max_steps_ends_inside_an_epoch_is_validated_at_its_last_step(
    make_cfg, tmp_path: Path
) -> None:
    import pandas as pd

    def validated_steps(run: str) -> list[int]:
        """The global steps at which the run logged val/acc (the CSV's step is 0-based)."""
        log = pd.read_csv(tmp_path / run / "csv" / "metrics.csv")
        return sorted(int(step) + 1 for step in log.dropna(subset=["val/acc"])["step"])

    small = ("strategy=scratch", "data.batch_size=4")
    run_training(make_cfg(*small, "trainer.max_epochs=1", out=tmp_path / "one"), tmp_path / "one")
    (per_epoch,) = validated_steps("one")
    assert per_epoch >= 4
    stop = per_epoch + per_epoch // 2  # half-way through the second epoch
    cut = run_training(
        make_cfg(
            *small, "trainer.max_epochs=3", f"+trainer.max_steps={stop}", out=tmp_path / "cut"
        ),
        tmp_path / "cut",
    )
    # validated at the epoch end and at the last step, so the last steps can be chosen
    assert validated_steps("cut") == [per_epoch, stop]
    assert cut["epochs_trained"] == 2
    # ended inside the first epoch (the cpu trainer's min_epochs is 1): validated there, and
    # the tested weights are that step's checkpoint, not the last weights unvalidated
    early = per_epoch // 2
    first = run_training(
        make_cfg(
            *small, "trainer.min_epochs=1", f"+trainer.max_steps={early}", out=tmp_path / "first"
        ),
        tmp_path / "first",
    )
    assert validated_steps("first") == [early]
    assert first["metrics"]["best_checkpoint"]
