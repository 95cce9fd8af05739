"""User-facing errors: each is reported as one line, never a traceback."""

from __future__ import annotations


class TransferlabError(Exception):
    """Base class for mistakes a user can fix (bad config, missing data or weights)."""


class ConfigError(TransferlabError):
    """A configuration value that is invalid or a combination that makes no sense."""


class DataError(TransferlabError):
    """A data set that is missing, unreadable, or cannot satisfy the requested split."""


class SourceError(TransferlabError):
    """Pretrained weights that cannot be found, loaded, or built."""


class CheckpointError(TransferlabError):
    """A checkpoint that is missing, unreadable, or built for another model."""


class DivergenceError(TransferlabError):
    """Training produced a NaN or infinite loss."""
