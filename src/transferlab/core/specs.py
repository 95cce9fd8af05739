"""What a backbone is fed (:class:`InputSpec`) and what a source of weights needs from it
(:class:`InputRequirement`): the one place of the rule "ImageNet weights want RGB images
normalised with ImageNet statistics, at least as large as the backbone needs"."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

_FIELDS = ("channels", "image_size", "normalize")


@dataclass(frozen=True)
class InputSpec(Mapping[str, Any]):
    """Channels, (square) image size and normalisation (``data``: the training pool's
    statistics, ``imagenet``, or ``none``) of a backbone's inputs. A read-only mapping with
    exactly these three keys, so ``dict(spec)`` is what cache keys and records hold."""

    channels: int
    image_size: int
    normalize: str | None = "data"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (int(self.channels), int(self.image_size), int(self.image_size))

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> InputSpec:
        """An InputSpec from a stored mapping (a checkpoint's or a cache entry's)."""
        return cls(int(spec["channels"]), int(spec["image_size"]), spec.get("normalize", "data"))


@dataclass(frozen=True)
class InputRequirement:
    """What a source's weights need of the inputs: a channel count and a normalisation
    (None: whatever the data has) and a minimum image size (from the backbone)."""

    channels: int | None = None
    normalize: str | None = None
    min_size: int = 1

    def resolve(self, channels: int, image_size: int, normalize: str | None) -> InputSpec:
        """The spec for data of ``channels`` x ``image_size`` normalised as ``normalize``."""
        return InputSpec(
            self.channels if self.channels is not None else int(channels),
            max(int(image_size), int(self.min_size)),
            self.normalize if self.normalize is not None else normalize,
        )

    def with_min_size(self, min_size: int) -> InputRequirement:
        return InputRequirement(self.channels, self.normalize, max(1, int(min_size)))


# ImageNet weights: RGB inputs with ImageNet statistics
IMAGENET_INPUTS = InputRequirement(channels=3, normalize="imagenet")
