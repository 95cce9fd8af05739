"""Parameter-efficient fine-tuning (``strategy.peft``): which backbone weights may train.

- ``bitfit`` (Ben Zaken et al. 2022): only the backbone's biases (BatchNorm shifts included);
- ``norm``: only the normalisation layers' affine weights and biases;
- ``lora`` (Hu et al. 2022): frozen backbone weights plus trained low-rank updates
  ``B @ A * alpha / rank`` on Conv2d and Linear layers, through the ``peft`` library
  (``pip install -e '.[peft]'``).

The head always trains. A method is a function ``(backbone, options) -> names of the backbone
parameters that may train`` registered in :data:`PEFT_METHODS`; the finetune module applies it
once and then keeps every other backbone parameter frozen through any freezing schedule.

A LoRA module's state dict is plain: each adapted layer appears as its merged weight
(``backbone.<layer>.weight``), so checkpoints export and load as ``source=checkpoint`` like any
other; the adapters and the frozen base weight ride along under ``peft.<layer>.*`` so that a
resumed run continues exactly.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import torch
from pydantic import PositiveFloat, PositiveInt
from torch import nn

from transferlab.core.errors import ConfigError
from transferlab.core.registry import Registry
from transferlab.modules.classifier import Fraction
from transferlab.modules.method_options import MethodOptions, method_name, method_options

ADAPTER = "default"  # peft's adapter name
ADAPTER_PREFIX = "peft."  # where a LoRA module's adapter tensors sit in its state dict
PeftMethod = Callable[[nn.Module, Any], set[str]]
PEFT_METHODS: Registry[PeftMethod] = Registry("peft method")
OPTIONS: dict[str, type[MethodOptions]] = {}


def register_peft(
    name: str, options: type[MethodOptions] = MethodOptions
) -> Callable[[PeftMethod], PeftMethod]:
    """Decorator: register ``fn(backbone, options) -> trainable names`` as ``peft=<name>``."""

    def add(fn: PeftMethod) -> PeftMethod:
        OPTIONS[name] = options
        return PEFT_METHODS.register(name, fn)

    return add


def _chosen(names: set[str], method: str, what: str, backbone: nn.Module) -> set[str]:
    if not names:
        model = getattr(backbone, "name", type(backbone).__name__)
        raise ConfigError(f"peft={method} trains {what}, but {model} has none; use peft=none")
    return names


@register_peft("bitfit")
def bitfit(backbone: nn.Module, options: MethodOptions) -> set[str]:
    """The backbone's biases."""
    names = {n for n, _ in backbone.named_parameters() if n.rsplit(".", 1)[-1] == "bias"}
    return _chosen(names, "bitfit", "only the biases", backbone)


NORM_LAYERS = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.modules.instancenorm._InstanceNorm,
)


@register_peft("norm")
def norm_layers(backbone: nn.Module, options: MethodOptions) -> set[str]:
    """The affine weights and biases of the backbone's normalisation layers."""
    names = {
        f"{layer}.{name}" if layer else name
        for layer, module in backbone.named_modules()
        if isinstance(module, NORM_LAYERS)
        for name, _ in module.named_parameters(recurse=False)
    }
    return _chosen(names, "norm", "only the normalisation layers", backbone)


class LoraOptions(MethodOptions):
    rank: PositiveInt = 4  # r: the rank of each update
    alpha: PositiveFloat = 8.0  # the update is scaled by alpha / rank
    dropout: Fraction = 0.0  # dropout on the adapters' input
    # module names (or name suffixes: "linear", "body.fc.linear") to adapt; null: every Conv2d
    # (not grouped: peft cannot merge those) and Linear layer of the backbone
    target_modules: list[str] | None = None


def lora_targets(backbone: nn.Module, wanted: list[str] | None) -> list[str]:
    """The names of the layers LoRA adapts; one line when none match or one cannot be merged."""
    layers = {
        name: module
        for name, module in backbone.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    }
    mergeable = [n for n, m in layers.items() if getattr(m, "groups", 1) == 1]
    model = getattr(backbone, "name", type(backbone).__name__)
    if wanted is None:
        chosen = mergeable
    else:
        chosen = [n for n in layers if any(n == w or n.endswith(f".{w}") for w in wanted)]
        grouped = [n for n in chosen if n not in mergeable]
        if grouped:
            raise ConfigError(
                f"peft=lora cannot adapt {grouped[0]} of {model}: a grouped convolution, which "
                "peft cannot merge; leave it out of strategy.peft.target_modules"
            )
    if not chosen:
        asked = "" if wanted is None else f" matching target_modules={wanted}"
        known = ", ".join(mergeable) or "none"
        raise ConfigError(
            f"peft=lora found no Conv2d or Linear layer{asked} in {model}; its layers: {known}"
        )
    return chosen


@register_peft("lora", LoraOptions)
def lora(backbone: nn.Module, options: LoraOptions) -> set[str]:
    """Low-rank adapters on the targeted layers (their own weights stay frozen)."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise ConfigError("peft=lora needs the peft library: pip install -e '.[peft]'") from None
    targets = lora_targets(backbone, options.target_modules)
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules="^(?:" + "|".join(re.escape(t) for t in targets) + ")$",
    )
    inject_adapter_in_model(config, backbone, adapter_name=ADAPTER)
    return {n for n, _ in backbone.named_parameters() if ".lora_" in n}


def peft_name(node: str | Mapping[str, Any] | None) -> str:
    """The method a ``strategy.peft`` node names; an unknown one lists the valid ones."""
    return method_name("peft method", node, PEFT_METHODS.names())


def check_peft(node: str | Mapping[str, Any] | None) -> tuple[str, Any]:
    """``(name, options)`` of a ``strategy.peft`` node, checked."""
    name = peft_name(node)
    if name == "none":
        return name, None
    return name, method_options("strategy.peft", node, OPTIONS[name])


def apply_peft(backbone: nn.Module, node: str | Mapping[str, Any] | None) -> set[str] | None:
    """Apply the method of ``node`` to ``backbone``: the names of the backbone parameters that
    may train (None: all of them)."""
    name, options = check_peft(node)
    if name == "none":
        return None
    return PEFT_METHODS.get(name)(backbone, options)


def restrict_trainable(backbone: nn.Module, trainable: set[str] | None) -> None:
    """Freeze every backbone parameter not in ``trainable`` (None: leave all as they are)."""
    if trainable is None:
        return
    for name, param in backbone.named_parameters():
        if name not in trainable:
            param.requires_grad_(False)


# ----------------------------------------------------------------------------- LoRA state dicts


def lora_layers(module: nn.Module) -> dict[str, nn.Module]:
    """The LoRA-adapted layers under ``module``, by name (none without the peft library).

    Called by every checkpoint save; a LoRA layer exists only once peft is imported, so peft
    (about 1.5 s of imports, ``transformers`` among them) is not imported here to find none.
    """
    loaded = sys.modules.get("peft.tuners.lora")
    if loaded is None:
        return {}
    return {n: m for n, m in module.named_modules() if isinstance(m, loaded.LoraLayer)}


def _base_keys(layer: nn.Module) -> list[str]:
    return list(layer.get_base_layer().state_dict().keys())


def merged_state_hook(
    module: nn.Module, state: dict[str, torch.Tensor], prefix: str, _meta: Any
) -> None:
    """State-dict post-hook: every LoRA layer ``L`` as its merged weight ``L.weight`` (and its
    base layer's other tensors as ``L.<name>``); the adapters and the base weight under
    ``peft.L.*``. Keeps the order of the other keys."""
    plain: dict[str, torch.Tensor] = {}
    moved: dict[str, torch.Tensor] = {}
    layers = {f"{prefix}{n}.": (n, m) for n, m in lora_layers(module).items()}
    for key, value in state.items():
        owner = next((p for p in layers if key.startswith(p)), None)
        if owner is None:
            plain[key] = value
            continue
        name, layer = layers[owner]
        rest = key[len(owner) :]
        if rest.startswith("base_layer."):
            base = rest[len("base_layer.") :]
            if base == "weight":
                moved[f"{prefix}{ADAPTER_PREFIX}{name}.{rest}"] = value
                with torch.no_grad():
                    value = value + layer.get_delta_weight(ADAPTER).to(value.dtype)
            plain[owner + base] = value
        else:
            moved[f"{prefix}{ADAPTER_PREFIX}{name}.{rest}"] = value
    state.clear()
    state.update(plain)
    state.update(moved)


def lora_load_hook(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, *_: Any) -> None:
    """Load pre-hook, the inverse of :func:`merged_state_hook`. A plain state without adapter
    tensors (any other run's checkpoint) loads as base weights with a zero update."""
    for name, layer in lora_layers(module).items():
        owner, adapters = f"{prefix}{name}.", f"{prefix}{ADAPTER_PREFIX}{name}."
        if owner + "weight" not in state:
            continue  # already in LoRA form, or missing (the load reports it)
        merged = state.pop(owner + "weight")
        base = state.pop(adapters + "base_layer.weight", None)
        for key in [k for k in state if k.startswith(adapters)]:
            state[owner + key[len(adapters) :]] = state.pop(key)
        if base is None:  # no adapters saved: the merged weight is the base, the update zero
            base = merged
            b_key = f"{owner}lora_B.{ADAPTER}.weight"
            state[b_key] = torch.zeros_like(layer.lora_B[ADAPTER].weight)
            a_key = f"{owner}lora_A.{ADAPTER}.weight"
            state.setdefault(a_key, layer.lora_A[ADAPTER].weight.detach().clone())
        state[owner + "base_layer.weight"] = base
        for key in _base_keys(layer):
            if key != "weight" and owner + key in state:
                state[f"{owner}base_layer.{key}"] = state.pop(owner + key)


def use_plain_state_dict(module: nn.Module) -> None:
    """Give ``module`` (holding LoRA layers) the plain, merged state dict described above."""
    module.register_state_dict_post_hook(merged_state_hook)
    module.register_load_state_dict_pre_hook(lora_load_hook)
