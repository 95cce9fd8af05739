"""What a run prints: Lightning's tips and repeated notices off everywhere; in a multirun (quiet
mode) no progress bars, model summaries or per-step notices, so each job is a line or two."""

from __future__ import annotations

import logging
import sys
import warnings

# messages from Lightning's loggers that say nothing about the run
_CHATTER = (
    "💡 Tip:",
    "Trainer already configured with model summary callbacks",
    "Loading `train_dataloader` to estimate number of stepping batches",
    "Restoring states from the checkpoint path",
    "Loaded model weights from the checkpoint",
)
_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric")
_quiet = False


class _DropChatter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_CHATTER)


def configure_console(quiet: bool) -> None:
    """Drop Lightning's chatter; ``quiet`` (a multirun job): also its info lines, and our own
    info lines on the console (they stay in the job's log file)."""
    global _quiet
    _quiet = quiet
    # Lightning's own use of a deprecated torch API, printed by every run
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(f, _DropChatter) for f in handler.filters):
                handler.addFilter(_DropChatter())
        if quiet:
            logger.setLevel(logging.WARNING)
    if quiet:
        for handler in logging.getLogger().handlers:
            stream = getattr(handler, "stream", None)
            if stream in (sys.stdout, sys.stderr):
                handler.setLevel(logging.WARNING)


def is_quiet() -> bool:
    """Whether this process runs multirun jobs (no progress bars or model summaries)."""
    return _quiet
