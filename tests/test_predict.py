"""``transferlab predict``: new image files through a trained model, prepared as in training,
from a checkpoint or an export, without the training data."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import compose_config
from PIL import Image

from transferlab.commands import main
from transferlab.core.specs import InputRequirement, InputSpec
from transferlab.data.datasets import load_dataset
from transferlab.data.inference import preprocess_file
from transferlab.data.target import target_datamodule
from transferlab.tasks import run_training
from transferlab.tasks.checkpoints import load_training_checkpoint
from transferlab.tasks.evaluate import rebuild_module
from transferlab.tasks.export import export_safetensors

N_IMAGES = 10


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A 2-epoch scratch run on digits; its checkpoint, 10 of its test images as PNG files and
    the classes eval.py's module gives those images."""
    root = tmp_path_factory.mktemp("run")
    cfg = compose_config(
        "train", ["strategy=scratch", "trainer.max_epochs=2"], root, root / "cache"
    )
    run_training(cfg, root)
    ckpt = root / "checkpoints" / "last.ckpt"
    payload, record = load_training_checkpoint(ckpt)
    train_cfg = record["cfg"]
    stored = InputSpec.of(record["input_spec"])  # the data module as eval.py builds it
    datamodule, _ = target_datamodule(
        train_cfg["data"], train_cfg["seed"], InputRequirement().with_min_size(stored.image_size)
    )
    module = rebuild_module(payload, record, datamodule.num_classes, datamodule.class_names)
    with torch.no_grad():
        logits = module.eval()(datamodule.test_set.images[:N_IMAGES])
    expected = [datamodule.class_names[i] for i in logits.argmax(dim=1).tolist()]
    raw = load_dataset("digits").test_images[datamodule.split.test[:N_IMAGES]]  # uint8 pool
    folder = root / "new_images"
    folder.mkdir()
    for i, image in enumerate(raw):
        Image.fromarray(image[0].numpy(), "L").save(folder / f"img{i:02d}.png")
    return {
        "ckpt": ckpt,
        "folder": folder,
        "expected": expected,
        "inputs": datamodule.test_set.images[:N_IMAGES],
        "prep": record["preprocessing"],
        "classes": datamodule.class_names,
    }


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_files_are_prepared_exactly_like_the_test_split(trained: dict[str, Any]) -> None:
    prep = trained["prep"]
    assert prep["resize"] == "tensor" and prep["decode_channels"] == 1
    assert len(set(trained["expected"])) > 1  # a model that tells the images apart
    files = sorted(trained["folder"].iterdir())
    inputs = torch.stack([preprocess_file(p, prep) for p in files])
    torch.testing.assert_close(inputs, trained["inputs"])


def test_predict_gives_eval_classes_on_a_folder(trained: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    assert main(["predict", str(trained["ckpt"]), str(trained["folder"]), "--out", str(out)]) == 0
    rows = _csv(out)
    assert [Path(r["path"]).name for r in rows] == [f"img{i:02d}.png" for i in range(N_IMAGES)]
    assert [r["class_1"] for r in rows] == trained["expected"]
    assert all(not r["error"] for r in rows)
    probs = [float(rows[0][f"prob_{k}"]) for k in range(1, 6)]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5


def test_export_predicts_without_the_training_data(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exported = export_safetensors(trained["ckpt"], tmp_path / "model.safetensors")

    def no_data(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("predict loaded a data set")

    monkeypatch.setattr("transferlab.data.datamodule.load_dataset", no_data)
    monkeypatch.setattr("transferlab.data.datasets.load_dataset", no_data)
    out = tmp_path / "preds.json"
    args = ["predict", str(exported), str(trained["folder"]), "--topk", "3", "--out", str(out)]
    assert main(args) == 0
    rows = json.loads(out.read_text())
    assert [r["top"][0]["class"] for r in rows] == trained["expected"]
    assert all(len(r["top"]) == 3 and r["error"] is None for r in rows)


def test_mixed_sizes_and_formats_and_a_broken_file(trained: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (16, 16, 4), dtype=np.uint8), "RGBA").save(
        folder / "b.png"
    )
    deep = rng.integers(0, 65535, (12, 20), dtype=np.uint16)
    Image.fromarray(deep).save(folder / "c16.png")
    Image.fromarray(rng.integers(0, 255, (9, 9), dtype=np.uint8)).save(folder / "d.bmp")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(trained["ckpt"]), str(folder), "--out", str(out)]) == 0
    rows = {Path(r["path"]).name: r for r in _csv(out)}
    assert sorted(rows) == ["a.jpg", "b.png", "broken.png", "c16.png", "d.bmp"]
    assert "cannot read image" in rows["broken.png"]["error"] and not rows["broken.png"]["class_1"]
    assert all(r["class_1"] and not r["error"] for n, r in rows.items() if n != "broken.png")


def test_old_checkpoint_and_missing_input_are_one_line(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = torch.load(trained["ckpt"], map_location="cpu", weights_only=True)
    del payload["transferlab_run"]["preprocessing"]
    old = tmp_path / "old.ckpt"
    torch.save(payload, old)
    assert main(["predict", str(old), str(trained["folder"]), "--out", str(tmp_path / "p.csv")])
    assert main(["predict", str(trained["ckpt"]), str(tmp_path / "nowhere")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("error: ") for e in errors)
    assert "no preprocessing record" in errors[0] and "export" in errors[0]
    assert "no such image file or folder" in errors[1]


def test_image_folder_files_are_resized_at_decode_as_in_training(tmp_path: Path) -> None:
    from transferlab.data.datamodule import ImageClassificationDataModule

    rng = np.random.default_rng(1)
    files = []
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(5):
            size = (20 + 7 * i, 15 + 3 * i, 3)
            path = tmp_path / name / f"{i}.{'jpg' if i % 2 else 'png'}"
            Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(path)
            files.append(path)
    datamodule = ImageClassificationDataModule(
        dataset="image_folder", root=tmp_path, image_size=12, val_fraction=0.1
    )
    datamodule.setup()
    prep = datamodule.preprocessing()
    assert prep["resize"] == "decode" and prep["class_names"] == ["cat", "dog"]
    inputs = torch.stack([preprocess_file(p, prep) for p in files])
    for image in datamodule.test_set.images:  # each test image is one file, prepared alike
        assert any(torch.allclose(image, x, atol=1e-5) for x in inputs)


def test_test_time_flip_is_rebuilt_from_the_checkpoint_record(trained: dict[str, Any]) -> None:
    """eval.py and predict rebuild the module from the run's strategy config, so a run trained
    with ``strategy.test_time_flip=true`` is evaluated and predicts with the flips."""
    payload, record = load_training_checkpoint(trained["ckpt"])
    strategy = {**record["cfg"]["strategy"], "test_time_flip": True}
    flipped = {**record, "cfg": {**record["cfg"], "strategy": strategy}}
    names = trained["classes"]
    plain = rebuild_module(payload, record, len(names), names).eval()
    with_flips = rebuild_module(payload, flipped, len(names), names).eval()
    assert not plain.test_time_flip and with_flips.test_time_flip
    inputs = trained["inputs"]
    with torch.no_grad():
        expected = (plain(inputs) + plain(inputs.flip(-1))) / 2
        torch.testing.assert_close(with_flips(inputs), expected)
