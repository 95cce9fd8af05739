"""transferlab: transfer learning and zero-shot learning for image recognition."""

__version__ = "0.1.0"
