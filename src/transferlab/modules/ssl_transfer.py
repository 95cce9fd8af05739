"""``strategy=ssl``: transfer from a self-supervised source (``source=ssl``: SimCLR, BYOL, ...).

The encoder is fine-tuned with the finetune machinery (a linear probe by default, as the
autoencoder and gan strategies), so the unsupervised sources line up in one sweep over
``strategy=`` (``experiment=fmnist_unsupervised``).
"""

from __future__ import annotations

from transferlab.modules.finetune import FinetuneModule
from transferlab.modules.registry import register_strategy


@register_strategy("ssl", uses_source=True, required_source="ssl")
class SSLTransferModule(FinetuneModule):
    """Fine-tuning (``mode``: linear_probe, full, ...) of a self-supervised source's encoder;
    ``source=random`` is its random-encoder control."""

    strategy_name = "ssl"
