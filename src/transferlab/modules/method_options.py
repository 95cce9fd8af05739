"""Config nodes that choose one method by name and set its options: ``strategy.regularizer``
and ``strategy.peft``. A node is a bare name (``l2sp``) or a mapping ``{name: l2sp, alpha: 0.1}``
in which a null option keeps the method's default. Each method declares its options as a strict
pydantic model, so an option the chosen method does not take is one line naming the ones it
does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from transferlab.core.errors import ConfigError
from transferlab.core.schema import check_model

NONE = "none"
M = TypeVar("M", bound=BaseModel)


class MethodOptions(BaseModel):
    """The options of one method (strict types, no unknown keys)."""

    model_config = ConfigDict(strict=True, extra="forbid")


def method_name(kind: str, node: str | Mapping[str, Any] | None, valid: Sequence[str]) -> str:
    """The method a node names (``none`` when null); an unknown name is one line listing
    ``valid``."""
    if node is None:
        return NONE
    name = node if isinstance(node, str) else node.get("name", NONE)
    name = NONE if name is None else name
    if not isinstance(name, str) or (name != NONE and name not in valid):
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join([NONE, *valid])}")
    return name


def method_options(where: str, node: str | Mapping[str, Any] | None, model: type[M]) -> M:
    """The options set in ``node`` (null: the default) checked against ``model``."""
    given = {} if node is None or isinstance(node, str) else dict(node)
    given.pop("name", None)
    return check_model(model, where, {k: v for k, v in given.items() if v is not None})
