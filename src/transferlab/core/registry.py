"""One registry for every kind of named, pluggable thing (backbones, data sets, sources,
strategies, tasks, methods): register by name, look up with one clear error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from transferlab.core.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind; ``get`` of an unknown name raises a one-line ConfigError
    naming the valid ones (``unknown strategy 'x'; valid: a, b``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, entry: T) -> T: ...

    def register(self, name: str, entry: T | None = None) -> T | Callable[[T], T]:
        """``registry.register(name, entry)``, or ``@registry.register(name)`` as a decorator."""
        if entry is not None:
            return self._add(name, entry)
        return lambda item: self._add(name, item)

    def _add(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        """The entry called ``name``; a ConfigError listing the valid names otherwise."""
        if name not in self._entries:
            raise ConfigError(f"unknown {self.kind} '{name}'; valid: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs, sorted by name."""
        return [(name, self._entries[name]) for name in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
