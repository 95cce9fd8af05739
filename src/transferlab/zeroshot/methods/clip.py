"""CLIP zero-shot classification with a prompt ensemble (Radford et al., 2021) via open_clip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from transferlab.core.errors import ConfigError, SourceError
from transferlab.data.preprocess import normalize_, to_float
from transferlab.zeroshot.leakage import refuse_unverifiable
from transferlab.zeroshot.methods.base import ClassSet, ZeroShotMethod, register_method

CLIP_TEMPLATES = (
    "a photo of a {}.",
    "a black and white photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of the {}.",
)


def load_open_clip(
    model_name: str, pretrained: str | None, model_config: str | None = None
) -> tuple[torch.nn.Module, object]:
    """The open_clip model and tokenizer. ``pretrained=None`` builds a randomly initialised model
    (for testing the plumbing only); ``model_config`` registers a model config JSON file first
    (its file stem is then a valid ``model_name``)."""
    import open_clip

    if model_config is not None:
        path = Path(model_config).expanduser()
        if not path.is_file():
            raise ConfigError(f"clip model_config {path} does not exist (an open_clip JSON config)")
        open_clip.add_model_config(path)
    if model_name not in open_clip.list_models():
        raise ConfigError(
            f"unknown open_clip model {model_name!r}; e.g. ViT-B-32, RN50 (open_clip.list_models())"
        )
    try:
        model = open_clip.create_model(model_name, pretrained=pretrained or None)
    except Exception as err:  # HF hub / URL errors of many kinds
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise SourceError(
            f"open_clip weights {model_name}/{pretrained} could not be loaded ({first}); they "
            'need internet once: python -c "import open_clip; open_clip.create_model('
            f"'{model_name}', pretrained='{pretrained}')\", or set strategy.clip.pretrained="
            "<local weights file>"
        ) from None
    return model.eval(), open_clip.get_tokenizer(model_name)


@register_method("clip")
class CLIPZeroShot(ZeroShotMethod):
    """Scores ``100 * cos(image embedding, class text embedding)``; the class embedding is the
    mean of the normalised embeddings of every prompt template filled with the class name.
    Nothing is trained (``fit`` only embeds the class names); inputs are uint8 images."""

    inputs = "raw"
    uses_source = False
    trains = False
    uses_semantics = False
    list_options = ("templates",)

    @classmethod
    def source_info(cls, options: dict[str, Any], allow_unverified: bool) -> dict[str, Any]:
        """open_clip's weights: web-scale pretraining that may have seen any class."""
        pretrained = options.get("pretrained")
        if pretrained:
            refuse_unverifiable(
                f"open_clip weights {pretrained!r} (web-scale pretraining)", allow_unverified
            )
        return {
            "source": "open_clip",
            "clip_model": options.get("model"),
            "clip_pretrained": pretrained,
            "leakage_verified": not pretrained,
        }

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = "openai",
        model_config: str | None = None,
        templates: Sequence[str] = CLIP_TEMPLATES,
        batch_size: int = 64,
        device: str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model, self.tokenizer = load_open_clip(model, pretrained, model_config)
        self.model.to(self.device)
        self.templates, self.batch_size = list(templates), int(batch_size)
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        self.mean = list(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = list(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        size = getattr(self.model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)

    @torch.no_grad()
    def class_embeddings(self, names: Sequence[str]) -> torch.Tensor:
        """``(K, dim)`` prompt-ensemble text embeddings, L2-normalised."""
        rows = []
        for name in names:
            tokens = self.tokenizer([t.format(name) for t in self.templates]).to(self.device)
            emb = F.normalize(self.model.encode_text(tokens).float(), dim=1).mean(dim=0)
            rows.append(F.normalize(emb, dim=0))
        return torch.stack(rows)

    def fit(
        self, x: torch.Tensor, y: torch.Tensor, seen: ClassSet, unseen: ClassSet
    ) -> CLIPZeroShot:
        self.num_seen = len(seen)
        self.text = self.class_embeddings(seen.names + unseen.names)
        return self

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images -> L2-normalised CLIP image embeddings."""
        out = []
        for batch in images.split(self.batch_size):
            x = normalize_(to_float(batch, self.image_size, 3), self.mean, self.std)
            out.append(F.normalize(self.model.encode_image(x.to(self.device)).float(), dim=1))
        return torch.cat(out).cpu()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return 100.0 * self.image_embeddings(x) @ self.text.cpu().T
