"""Offline domain shifts on float image tensors: rotate, blur, invert, additive noise.

A shift is applied once to a whole split (N, C, H, W in [0, 1]) before normalisation, in a
fixed order (rotate -> blur -> invert -> noise) and deterministically: the noise of each split
(``stream``) is drawn from a generator seeded by ``(seed, stream)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from transferlab.core.errors import ConfigError

SHIFT_KEYS = ("invert", "noise_std", "rotate", "blur_sigma", "seed")


@dataclass(frozen=True)
class DomainShift:
    """A deterministic image-domain shift.

    ``invert``: ``x -> 1 - x``; ``noise_std``: additive Gaussian noise (clipped to [0, 1]);
    ``rotate``: degrees counter-clockwise (black fill); ``blur_sigma``: Gaussian blur;
    ``seed``: seeds the noise (the domain is the same for every run seed).
    """

    invert: bool = False
    noise_std: float = 0.0
    rotate: float = 0.0
    blur_sigma: float = 0.0
    seed: int = 0

    @property
    def is_identity(self) -> bool:
        """True when the shift changes nothing."""
        return not self.invert and not self.noise_std and not self.rotate and not self.blur_sigma

    def describe(self) -> str:
        """A short name such as ``invert+noise0.3``."""
        parts = [
            f"rotate{self.rotate:g}" if self.rotate else "",
            f"blur{self.blur_sigma:g}" if self.blur_sigma else "",
            "invert" if self.invert else "",
            f"noise{self.noise_std:g}" if self.noise_std else "",
        ]
        return "+".join(p for p in parts if p) or "none"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, images: torch.Tensor, stream: int = 0) -> torch.Tensor:
        """The shifted copy of float ``images`` (N, C, H, W) in [0, 1]; ``stream`` names the
        split (train/val/test) so that each split gets its own, reproducible noise."""
        # torchvision here, not at import: the data path of a run without a shift never needs it
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        x = images.to(torch.float32)
        if self.rotate:
            x = TF.rotate(x, self.rotate, interpolation=InterpolationMode.BILINEAR, fill=0.0)
        if self.blur_sigma:
            size = 2 * math.ceil(3 * self.blur_sigma) + 1
            x = TF.gaussian_blur(x, [size, size], [self.blur_sigma, self.blur_sigma])
        if self.invert:
            x = 1.0 - x
        if self.noise_std:
            generator = torch.Generator().manual_seed(self.seed * 1000 + int(stream))
            x = x + self.noise_std * torch.randn(x.shape, generator=generator)
        if x is images:
            x = x.clone()
        return x.clamp_(0.0, 1.0)


def _number(key: str, value: Any, minimum: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"shift.{key}={value!r} is invalid; use a number")
    if minimum is not None and value < minimum:
        raise ConfigError(f"shift.{key}={value!r} is invalid; use a number >= {minimum:g}")
    return float(value)


def parse_shift(spec: Mapping[str, Any] | DomainShift | None) -> DomainShift | None:
    """A :class:`DomainShift` from a config mapping (None or an identity shift -> None)."""
    if spec is None or isinstance(spec, DomainShift):
        return None if spec is None or spec.is_identity else spec
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"shift={spec!r} is invalid; use a mapping with keys {', '.join(SHIFT_KEYS)}"
        )
    unknown = sorted(set(spec) - set(SHIFT_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown shift option(s) {', '.join(map(str, unknown))}; accepted: "
            f"{', '.join(SHIFT_KEYS)}"
        )
    invert = spec.get("invert") or False
    if not isinstance(invert, bool):
        raise ConfigError(f"shift.invert={invert!r} is invalid; use true or false")
    seed = spec.get("seed") or 0
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"shift.seed={seed!r} is invalid; use an integer >= 0")
    shift = DomainShift(
        invert=invert,
        noise_std=_number("noise_std", spec.get("noise_std") or 0.0, 0.0),
        rotate=_number("rotate", spec.get("rotate") or 0.0, None),
        blur_sigma=_number("blur_sigma", spec.get("blur_sigma") or 0.0, 0.0),
        seed=seed,
    )
    return None if shift.is_identity else shift
