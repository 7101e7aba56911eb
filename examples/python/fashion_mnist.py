"""Fashion-MNIST from Debian's dataset-fashion-mnist (gzip IDX files), as float tensors."""
import gzip
from pathlib import Path

import numpy
import torch

FOLDER = Path("/usr/share/datasets/fashion-mnist")


def _idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return torch.from_numpy(numpy.frombuffer(data, dtype=numpy.uint8, offset=4 + 4 * dims).reshape(shape).copy())


def load(split):
    """(images float32 [N, 1, 28, 28] normalized, labels int64 [N]) of "train" or "t10k"."""
    images = _idx(FOLDER / f"{split}-images-idx3-ubyte.gz").float().div(255).unsqueeze(1)
    labels = _idx(FOLDER / f"{split}-labels-idx1-ubyte.gz").long()
    return (images - 0.2860) / 0.3530, labels
