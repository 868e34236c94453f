"""Batched data augmentation on tensors, applied at train time only.

:class:`Augment` works on a whole batch already on the training device, drawing its
randomness from an explicit :class:`torch.Generator` so that runs are reproducible.
The loop in :mod:`ml.training` calls it in ``train_one_epoch``; ``evaluate`` and
prediction never do.

Configuration is a plain dict, for example::

    {"hflip": False, "shift": 1, "occlusion": 0.25, "noise": 0.0}

Horizontal flips are off by default because they change the meaning of many images
(a flipped 7 is not a 7); turn them on for natural photographs.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Self

import torch

if TYPE_CHECKING:
    from collections.abc import Mapping

from ml.config import AUGMENT_DEFAULTS, augment_config, augment_validate  # noqa: F401 (re-exported)

_MIN_OCCLUSION_AREA = 0.02


class Augment:
    """Random batch transforms for images ``(N, C, H, W)`` or feature vectors ``(N, F)``.

    Each transform draws independently per sample. Order: flip, shift, occlusion, noise.

    Parameters
    ----------
    hflip : bool, default=False
        Mirror each image left-right with probability 1/2.
    shift : int, default=0
        Pad by ``shift`` zero pixels on every side and crop back to the original size at a
        random offset: moves the content by up to ``shift`` pixels in each direction.
    occlusion : float, default=0.0
        Largest fraction of the image area hidden by random erasing, in ``[0, 0.5]``; 0
        turns it off. The patch is a rectangle of zeros (every channel), of area uniform
        in ``[0.02, occlusion]`` of the image and aspect ratio in ``[1/2, 2]``, clipped so
        that it never covers more than ``occlusion`` of the image.
    occlusion_p : float, default=0.5
        Probability that a sample gets a patch.
    noise : float, default=0.0
        Standard deviation of additive Gaussian noise, in input units (applies to
        feature vectors too).

    Raises
    ------
    ValueError
        On a value out of range.

    Notes
    -----
    Spatial transforms on a 2-d (feature) batch raise ``ValueError`` when called.
    """

    def __init__(
        self, hflip: bool = False, shift: int = 0, occlusion: float = 0.0, occlusion_p: float = 0.5, noise: float = 0.0
    ) -> None:
        augment_validate(hflip, shift, occlusion, occlusion_p, noise)
        self.hflip = hflip
        self.shift = shift
        self.occlusion = float(occlusion)
        self.occlusion_p = float(occlusion_p)
        self.noise = float(noise)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> Self:
        """Build from a config dict; ``None`` or ``{}`` gives no augmentation.

        Raises
        ------
        ValueError
            On an unknown key or a value out of range.
        """
        return cls(**augment_config(config))

    @property
    def spatial(self) -> bool:
        """Whether a transform needs images (flip, shift or occlusion)."""
        return self.hflip or self.shift > 0 or self.occlusion > 0

    @property
    def active(self) -> bool:
        """Whether any transform is on."""
        return self.spatial or self.noise > 0

    def __repr__(self) -> str:
        return (
            f"Augment(hflip={self.hflip}, shift={self.shift}, occlusion={self.occlusion}, "
            f"occlusion_p={self.occlusion_p}, noise={self.noise})"
        )

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return an augmented copy of the batch ``x`` (the input is not modified).

        Parameters
        ----------
        x : torch.Tensor
            ``(N, C, H, W)`` images or ``(N, F)`` features, on any device.
        generator : torch.Generator, optional
            Source of randomness, on the same device as ``x``.
        """
        if self.spatial and x.dim() != 4:
            raise ValueError(f"flip, shift and occlusion need (N, C, H, W) images, got shape {tuple(x.shape)}")
        if self.hflip:
            x = hflip(x, generator)
        if self.shift > 0:
            x = random_shift(x, self.shift, generator)
        if self.occlusion > 0:
            x = random_occlusion(x, self.occlusion, self.occlusion_p, generator)
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x


def _rand(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


def hflip(x: torch.Tensor, generator: torch.Generator | None = None, p: float = 0.5) -> torch.Tensor:
    """Mirror each image of ``x`` left-right with probability ``p``."""
    flip = _rand(x.shape[0], generator, x.device) < p
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_shift(x: torch.Tensor, shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero-pad by ``shift`` pixels and crop back at a per-sample random offset."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (shift, shift, shift, shift))
    span = 2 * shift + 1
    dy = (_rand(n, generator, x.device) * span).long().clamp_max(span - 1)
    dx = (_rand(n, generator, x.device) * span).long().clamp_max(span - 1)
    rows = (torch.arange(h, device=x.device).view(1, h) + dy.view(n, 1)).view(n, 1, h, 1)
    cols = (torch.arange(w, device=x.device).view(1, w) + dx.view(n, 1)).view(n, 1, 1, w)
    padded = padded.gather(2, rows.expand(n, x.shape[1], h, padded.shape[3]))
    return padded.gather(3, cols.expand(n, x.shape[1], h, w))


def random_occlusion(
    x: torch.Tensor, max_area: float, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero a random rectangle in each image with probability ``p``.

    The rectangle's area is at most ``max_area`` of the image, and at least one pixel
    (see :class:`Augment`).
    """
    n, _, h, w = x.shape
    device = x.device
    limit = max(1, int(math.floor(max_area * h * w)))
    low = min(_MIN_OCCLUSION_AREA, max_area)
    area = (low + (max_area - low) * _rand(n, generator, device)) * (h * w)
    ratio = torch.exp((_rand(n, generator, device) * 2 - 1) * math.log(2.0))
    ph = torch.sqrt(area * ratio).round().long().clamp(1, min(h, limit))
    pw = torch.div(limit, ph, rounding_mode="floor").clamp(1, w)
    pw = torch.minimum(pw, torch.sqrt(area / ratio).round().long().clamp(1, w))
    y0 = (_rand(n, generator, device) * (h - ph + 1)).long()
    x0 = (_rand(n, generator, device) * (w - pw + 1)).long()
    apply = _rand(n, generator, device) < p
    ar_h = torch.arange(h, device=device).view(1, h)
    ar_w = torch.arange(w, device=device).view(1, w)
    in_rows = (ar_h >= y0.view(n, 1)) & (ar_h < (y0 + ph).view(n, 1))
    in_cols = (ar_w >= x0.view(n, 1)) & (ar_w < (x0 + pw).view(n, 1))
    mask = in_rows.view(n, 1, h, 1) & in_cols.view(n, 1, 1, w) & apply.view(n, 1, 1, 1)
    return x.masked_fill(mask, 0.0)
