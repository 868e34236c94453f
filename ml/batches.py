"""In-memory data on the training device: device choice, input shapes, batches.

Data are converted once to tensors and batched by index permutation, without
``DataLoader`` workers (whose start-up and IPC cost more than they save for arrays that
already sit in memory). On CUDA a small dataset is moved to the GPU once; a larger one is
pinned and copied batch by batch without blocking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy import ndarray

if TYPE_CHECKING:
    from collections.abc import Iterator

    from numpy.typing import ArrayLike


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def choose_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`, or CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_inputs(X: ArrayLike, input_shape: tuple[int, ...], name: str = "X") -> ndarray:
    """Return ``X`` as a float32 array of shape ``(N, *input_shape)``.

    Flat rows (``(N, C*H*W)``, such as scikit-learn's digits) and single-channel
    ``(N, H, W)`` images are reshaped; any other shape mismatch raises ``ValueError``.
    """
    X = np.asarray(X, dtype=np.float32)
    input_shape = tuple(input_shape)
    if X.ndim >= 1 and X.shape[1:] != input_shape:
        size = int(np.prod(input_shape))
        flat = X.ndim == 2 and X.shape[1] == size
        single_channel = X.ndim == 3 and input_shape[0] == 1 and X.shape[1:] == input_shape[1:]
        if flat or single_channel:
            X = X.reshape((X.shape[0],) + input_shape)
    _require(
        X.ndim >= 1 and X.shape[1:] == input_shape,
        f"{name} has shape {X.shape}, expected (N, {', '.join(map(str, input_shape))})",
    )
    _require(bool(np.isfinite(X).all()), f"{name} contains NaN or infinite values")
    return X


class TensorBatches:
    """Batches of in-memory tensors, on ``device``, by index permutation.

    Parameters
    ----------
    tensors : sequence of torch.Tensor
        CPU tensors sharing their first dimension (inputs, labels, weights).
    batch_size : int
        Rows per batch.
    device : torch.device
        Where batches are delivered. On CUDA the tensors are moved to the GPU once when
        they take at most ``max_device_bytes``, else pinned and copied batch by batch
        (non-blocking).
    shuffle : bool, default=False
        Draw a new permutation with ``generator`` on every pass.
    generator : torch.Generator, optional
        CPU generator for the permutation or the sampler.
    sample_probs : torch.Tensor, optional
        Draw rows with replacement with these probabilities instead (a weighted sampler).
    merge_single : bool, default=False
        Fold a last batch of one row into the previous batch (batch norm cannot train on
        a single row).
    max_device_bytes : int, default=1 GiB
        See ``device``.
    """

    def __init__(
        self,
        tensors: tuple[torch.Tensor, ...],
        batch_size: int,
        device: torch.device | str,
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        sample_probs: torch.Tensor | None = None,
        merge_single: bool = False,
        max_device_bytes: int = 1 << 30,
    ) -> None:
        n = tensors[0].shape[0]
        _require(all(t.shape[0] == n for t in tensors), "tensors must share their first dimension")
        self.n = n
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.shuffle = shuffle
        self.generator = generator
        self.sample_probs = sample_probs
        self.merge_single = merge_single
        self.on_device = self.device.type == "cpu" or sum(t.nbytes for t in tensors) <= max_device_bytes
        if self.on_device:
            self.tensors = tuple(t.to(self.device) for t in tensors)
        else:
            self.tensors = tuple(t.pin_memory() for t in tensors)

    def _bounds(self) -> Iterator[tuple[int, int]]:
        start = 0
        while start < self.n:
            stop = min(start + self.batch_size, self.n)
            if self.merge_single and self.n - stop == 1:
                stop = self.n
            yield start, stop
            start = stop

    def __len__(self) -> int:
        return sum(1 for _ in self._bounds())

    def _take(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.on_device:
            return tuple(t.index_select(0, index) for t in self.tensors)
        out = []
        for t in self.tensors:
            buffer = torch.empty((index.shape[0],) + t.shape[1:], dtype=t.dtype, pin_memory=True)
            torch.index_select(t, 0, index, out=buffer)
            out.append(buffer.to(self.device, non_blocking=True))
        return tuple(out)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        if self.sample_probs is not None:
            order = torch.multinomial(self.sample_probs, self.n, replacement=True, generator=self.generator)
        elif self.shuffle:
            order = torch.randperm(self.n, generator=self.generator)
        else:
            order = None
        if order is not None and self.on_device:
            order = order.to(self.device)
        for start, stop in self._bounds():
            if order is None and self.on_device:
                yield tuple(t[start:stop] for t in self.tensors)
            elif order is None:
                yield self._take(torch.arange(start, stop))
            else:
                yield self._take(order[start:stop])
