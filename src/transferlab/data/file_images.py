"""Image files as a lazy uint8 (N, C, H, W) array: a folder too large for memory is held as
paths and decoded batch by batch where batches are sliced (in the loader's workers)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from transferlab.core.errors import DataError
from transferlab.data.decode import decode_image


class FileImages:
    """``paths`` decoded on demand to uint8 (C, H, W), each resized to ``resize`` squared at
    decode when set (grayscale when ``gray``). Indexing with an int gives one image, with a
    slice, index list or tensor a stacked batch; :meth:`subset` keeps rows undecoded."""

    dtype = torch.uint8

    def __init__(
        self,
        paths: Sequence[Path],
        gray: bool,
        height: int,
        width: int,
        resize: int | None = None,
        limit: int | None = None,
    ) -> None:
        self.paths = list(paths)
        self.gray, self.height, self.width = gray, height, width
        self.resize, self.limit = resize, limit

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.paths), 1 if self.gray else 3, self.height, self.width))

    def __len__(self) -> int:
        return len(self.paths)

    def _rows(self, index: Any) -> list[int]:
        if isinstance(index, slice):
            return list(range(len(self.paths)))[index]
        return torch.as_tensor(index, dtype=torch.int64).reshape(-1).tolist()

    def subset(self, rows: Any) -> FileImages:
        """The images at ``rows``, still undecoded."""
        paths = [self.paths[i] for i in self._rows(rows)]
        return FileImages(paths, self.gray, self.height, self.width, self.resize, self.limit)

    def decode(self, rows: Sequence[int]) -> torch.Tensor:
        """The images at ``rows`` as one uint8 tensor (n, C, H, W)."""
        stacked = np.empty((len(rows), *self.shape[1:]), dtype=np.uint8)
        for i, row in enumerate(rows):
            path = self.paths[row]
            array = decode_image(path, self.gray, self.resize, self.limit)
            if array.shape != stacked.shape[1:]:  # a file whose header lied about its size
                raise DataError(
                    f"image {path} decoded to {array.shape[2]}x{array.shape[1]}, not "
                    f"{self.width}x{self.height} as its header says; fix or remove the file"
                )
            stacked[i] = array
        return torch.from_numpy(stacked)

    def __getitem__(self, index: Any) -> torch.Tensor:
        if isinstance(index, int) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            return self.decode([int(index)])[0]
        return self.decode(self._rows(index))


def take(images: torch.Tensor | FileImages, rows: torch.Tensor) -> torch.Tensor | FileImages:
    """The ``rows`` of an image tensor, or of file images without decoding them."""
    return images.subset(rows) if isinstance(images, FileImages) else images[rows]
