"""transferlab: transfer learning and zero-shot learning for image recognition."""

from transferlab.core.startup import skip_torchmetrics_transformers

__version__ = "0.1.0"

# before anything imports lightning (and with it torchmetrics): see transferlab/core/startup.py
skip_torchmetrics_transformers()
