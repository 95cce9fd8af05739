"""Typed configs: every option's type lives in one place (a pydantic model, or the annotations
of the function or class the options are handed to) and is checked by pydantic in strict mode
(no silent conversions: ``"5"`` is not an int, ``1`` is not a bool). A wrong type, a value out
of range or an unknown key becomes one :class:`ConfigError` line naming the key, the value and
what is accepted (with the closest key for a misspelling)."""

from __future__ import annotations

import difflib
import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    TypeAdapter,
    ValidationError,
    validate_call,
)

from transferlab.core.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True)


def closest(name: str, accepted: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the accepted name closest to ``name`` (or nothing)."""
    match = difflib.get_close_matches(name, list(accepted), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _key(where: str, loc: Iterable[Any]) -> str:
    parts = [str(p) for p in loc if not isinstance(p, int) or p != 0]
    return ".".join([where, *parts] if where else parts)


def _first_problem(err: ValidationError) -> tuple[dict[str, Any], str]:
    """The first failing value and its message; a value that fits none of a union's types
    gets every member's message (``a valid boolean or 'auto'``)."""
    errors = err.errors(include_url=False)
    first = errors[0]
    same = [e for e in errors if e["loc"][:1] == first["loc"][:1]]
    if len(same) == 1:
        return first, first["msg"]
    messages = [e["msg"].removeprefix("Input should be ") for e in same]
    return {**first, "loc": first["loc"][:1]}, "Input should be " + " or ".join(
        dict.fromkeys(messages)
    )


def one_line(err: ValidationError, where: str = "", accepted: Iterable[str] = ()) -> str:
    """The first problem of a pydantic error as one line: ``data.batch_size=0 is invalid:
    Input should be greater than 0``."""
    first, message = _first_problem(err)
    loc = [p for p in first["loc"] if p not in ("__init__",)]
    name = str(loc[-1]) if loc else ""
    if first["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        names = sorted(accepted)
        return f"{_key(where, loc)} is not an option{closest(name, names)}" + (
            f"; accepted: {', '.join(names)}" if names else ""
        )
    if first["type"] == "missing_argument":
        return f"{_key(where, loc)} is missing"
    return f"{_key(where, loc)}={first.get('input')!r} is invalid: {message}"


def _accepted(fn: Callable[..., Any]) -> list[str]:
    params = inspect.signature(fn).parameters.values()
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in params if p.kind not in kinds and p.name != "self"]


def typed(where: str = "") -> Callable[[F], F]:
    """Decorator: check every call's arguments against the function's annotations (strictly),
    turning a mistake into one ConfigError line prefixed with ``where`` (e.g. ``data``). Not
    for LightningModule constructors (Lightning reads their frames): see
    :func:`check_arguments`."""

    def decorate(fn: F) -> F:
        checked = validate_call(config=STRICT)(fn)
        accepted = _accepted(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return checked(*args, **kwargs)
            except ValidationError as err:
                raise ConfigError(one_line(err, where, accepted)) from None

        return typing.cast(F, wrapper)

    return decorate


@functools.lru_cache(maxsize=512)
def _adapter(hint: Any) -> TypeAdapter:
    return TypeAdapter(hint, config=STRICT)


def check_arguments(
    where: str,
    values: Mapping[str, Any],
    functions: Iterable[Callable[..., Any]],
    accepted: Iterable[str] | None = None,
) -> None:
    """Check ``values`` (config keys -> values) against the annotated parameters of
    ``functions`` (e.g. a class hierarchy's constructors) without calling them; ``accepted``
    limits the keys allowed (default: every named parameter)."""
    hints: dict[str, Any] = {}
    names: list[str] = []
    for fn in functions:
        try:
            resolved = typing.get_type_hints(fn, include_extras=True)
        except (NameError, TypeError):  # an annotation that cannot be resolved: names only
            resolved = {}
        for name in _accepted(fn):
            names.append(name)
            if name in resolved and name not in hints:
                hints[name] = resolved[name]
    allowed = sorted(set(accepted if accepted is not None else names))
    for key, value in values.items():
        if key not in allowed:
            raise ConfigError(
                f"{_key(where, [key])} is not an option{closest(key, allowed)}; "
                f"accepted: {', '.join(allowed) or 'none'}"
            )
        if key in hints:
            try:
                _adapter(hints[key]).validate_python(value)
            except ValidationError as err:
                message = _first_problem(err)[1]
                raise ConfigError(f"{_key(where, [key])}={value!r} is invalid: {message}") from None


class RunOptions(BaseModel):
    """The top-level options of every run (the config groups are checked on their own)."""

    model_config = ConfigDict(strict=True, extra="ignore")

    seed: NonNegativeInt | None = None
    test: bool = True
    resume: bool = False
    print_config: bool = True
    ckpt_path: str | None = None


class PerfOptions(BaseModel):
    """``perf``: the speed settings of a run (see ``modules/perf.py``)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    channels_last: bool | Literal["auto"] = "auto"
    compile: bool = False
    compile_features: bool | Literal["auto"] = "auto"
    float32_matmul_precision: Literal["highest", "high", "medium"] | None = None
    num_threads: PositiveInt | None = None


# Lightning's "no limit" is -1 for these counts
UpToUnlimited = Annotated[int, Field(ge=-1)]
# a batch limit: a number of batches, or a fraction of them
BatchLimit = NonNegativeInt | Annotated[float, Field(ge=0.0, le=1.0)]


class TrainerOptions(BaseModel):
    """``trainer``: the counts of a Trainer, checked before Lightning sees them (it takes
    ``max_epochs='abc'`` and fails mid-fit with a traceback). The other keys are Lightning's
    own arguments, checked when the Trainer is built."""

    model_config = ConfigDict(strict=True, extra="allow")

    max_epochs: UpToUnlimited | None = None
    min_epochs: NonNegativeInt | None = None
    max_steps: UpToUnlimited = -1
    min_steps: NonNegativeInt | None = None
    check_val_every_n_epoch: PositiveInt | None = 1
    log_every_n_steps: NonNegativeInt | None = None
    num_sanity_val_steps: UpToUnlimited | None = None
    accumulate_grad_batches: PositiveInt = 1
    limit_train_batches: BatchLimit | None = None
    limit_val_batches: BatchLimit | None = None
    limit_test_batches: BatchLimit | None = None
    overfit_batches: BatchLimit = 0.0


class SourceTrainingOptions(BaseModel):
    """The keys every built-on-demand source (``source=pretrain|autoencoder|gan``) shares,
    checked before anything is loaded; each kind's other keys are its own."""

    model_config = ConfigDict(strict=True, extra="allow")

    max_epochs: PositiveInt = 10
    limit_train_batches: BatchLimit | None = None
    batch_size: PositiveInt = 64
    seed: NonNegativeInt | None = 0
    allow_overlap: bool = False


class ModelOptions(BaseModel):
    """``model``: the backbone's name and input options (the rest are the builder's own
    keyword options, checked by the backbone registry)."""

    model_config = ConfigDict(strict=True, extra="allow")

    name: str
    small_input: bool | None = None
    min_input_size: PositiveInt = 1


def check_model(model: type[BaseModel], where: str, values: Mapping[str, Any]) -> BaseModel:
    """``values`` as ``model`` (one ConfigError line for the first problem)."""
    try:
        return model.model_validate(dict(values))
    except ValidationError as err:
        raise ConfigError(one_line(err, where, model.model_fields)) from None
