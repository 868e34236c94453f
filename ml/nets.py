"""Networks for the supervised step: a small CNN for images and an MLP over fixed features.

Both are :class:`Classifier` modules with two parts, ``backbone`` and ``head``. The
backbone maps raw inputs to the penultimate representation returned by
:meth:`Classifier.features` (the embedding used by the semi-supervised pipeline); the
head is one linear layer from that embedding to class logits. Transfer between runs
copies the backbone and replaces the head when the class count changes
(:func:`load_backbone`).

Inputs are standardized inside the backbone (:class:`Standardize`, whose statistics are
buffers set by the trainer), so a saved state dict carries everything needed to predict
on raw pixels or raw features.

Models are built from a plain JSON-able config by :func:`build_model`; the loop that
trains them lives in :mod:`ml.training`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:

    from collections.abc import Mapping, Sequence
    from typing import Self

from ml.config import ARCHS, MODEL_DEFAULTS, MODEL_KEYS, _pair, model_config  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)


class Standardize(nn.Module):
    """Subtract a per-channel (or per-feature) mean and divide by a standard deviation.

    Parameters
    ----------
    n : int
        Number of channels (images, input ``(N, C, H, W)``) or features (input ``(N, F)``).

    Notes
    -----
    ``mean`` and ``std`` are buffers: they travel with the state dict and are never
    trained. They start as the identity (0 and 1); :meth:`set_statistics` fills them
    from training data. A constant channel or feature keeps a standard deviation of 1,
    so a value never seen in training is not blown up.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))

    @torch.no_grad()
    def set_statistics(self, x: torch.Tensor) -> None:
        """Set ``mean`` and ``std`` from a batch ``x`` laid out like the inputs."""
        dims = [d for d in range(x.dim()) if d != 1]
        self.mean.copy_(x.float().mean(dim=dims))
        std = x.float().std(dim=dims) if x.shape[0] > 1 else torch.ones_like(self.std)
        self.std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)


class Classifier(nn.Module):
    """A backbone followed by a linear head; the base of the networks in this module.

    Parameters
    ----------
    backbone : nn.Module
        Maps inputs to embeddings of size ``embed_dim``; its first module is a
        :class:`Standardize`.
    embed_dim : int
        Size of the penultimate representation.
    n_classes : int
        Number of outputs of the head.
    input_shape : tuple of int
        Shape of one input, ``(C, H, W)`` or ``(F,)``; lets callers reshape flat rows.
    """

    def __init__(self, backbone: nn.Sequential, embed_dim: int, n_classes: int, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.backbone = backbone
        self.input_shape = tuple(input_shape)
        self.head = nn.Linear(embed_dim, n_classes)
        self.embed_dim = embed_dim
        self.n_classes = n_classes
        self.backbone_frozen = False

    @property
    def standardize(self) -> Standardize:
        """The :class:`Standardize` layer at the input of the backbone."""
        layer = self.backbone[0]
        assert isinstance(layer, Standardize)
        return layer

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation (the embedding), shape ``(N, embed_dim)``."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def freeze_backbone(self, frozen: bool = True) -> Self:
        """Stop (or resume) training the backbone.

        A frozen backbone has ``requires_grad=False`` on its parameters and stays in
        eval mode even when the model is in train mode, so batch-norm statistics and
        dropout in the backbone do not change either: its output is a fixed function.
        """
        self.backbone_frozen = frozen
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> Self:
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(Classifier):
    """A small VGG-style CNN whose depth follows the input size.

    Stages of two 3x3 conv-BN-ReLU blocks are separated by 2x2 max-pooling; one stage is
    added per doubling of the image side above 8 pixels (8x8 digits: 2 stages, 64x64:
    5), channels double per stage up to ``8 * width``. An adaptive average pool to 2x2
    makes the embedding size independent of the image size.

    Parameters
    ----------
    in_channels : int
        Channels of the input images (1 for grey, 3 for RGB).
    image_size : int or (int, int)
        Height and width of the input images; at least 2.
    n_classes : int
        Number of classes.
    width : int, default=32
        Channels of the first stage; the embedding has ``4 * width`` dimensions.
    dropout : float, default=0.1
        Dropout on the embedding during training.
    """

    def __init__(
        self, in_channels: int, image_size: int | Sequence[int], n_classes: int, width: int = 32, dropout: float = 0.1
    ) -> None:
        height, width_px = _pair(image_size)
        n_stages = 2 + max(0, int(math.floor(math.log2(min(height, width_px) / 8))))
        layers: list[nn.Module] = [Standardize(in_channels)]
        c_in, c_out = in_channels, width
        for stage in range(n_stages):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            layers += _conv_block(c_in, c_out) + _conv_block(c_out, c_out)
            c_in, c_out = c_out, min(2 * c_out, 8 * width)
        embed_dim = 4 * width
        layers += [
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * c_in, embed_dim),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        ]
        super().__init__(nn.Sequential(*layers), embed_dim, n_classes, (in_channels, height, width_px))


class MLPClassifier(Classifier):
    """A one-hidden-layer MLP over fixed features (text embeddings, a frozen backbone).

    Parameters
    ----------
    in_features : int
        Size of the input vectors.
    n_classes : int
        Number of classes.
    width : int, default=128
        Hidden size, which is also the embedding size.
    dropout : float, default=0.1
        Dropout on the input and on the hidden layer during training.
    """

    def __init__(self, in_features: int, n_classes: int, width: int = 128, dropout: float = 0.1) -> None:
        backbone = nn.Sequential(
            Standardize(in_features),
            nn.Dropout(dropout),
            nn.Linear(in_features, width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        super().__init__(backbone, width, n_classes, (in_features,))


def build_model(config: Mapping[str, Any]) -> Classifier:
    """Build an untrained network from a plain config.

    Parameters
    ----------
    config : dict
        ``arch`` (``"cnn"`` or ``"mlp"``, default ``"cnn"``), ``n_classes`` (>= 2),
        ``in_channels`` and ``image_size`` for ``"cnn"``, ``in_features`` for ``"mlp"``,
        and optionally ``width`` and ``dropout`` (see :data:`MODEL_DEFAULTS`). Other
        keys (training settings) are ignored, so a training config works as is.

    Returns
    -------
    Classifier
        A :class:`SmallCNN` or :class:`MLPClassifier`, on the CPU, in train mode.

    Raises
    ------
    ValueError
        If the config is invalid (see :func:`model_config`).

    Examples
    --------
    >>> model = build_model({"arch": "cnn", "in_channels": 1, "image_size": 8, "n_classes": 10})
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    """
    cfg = model_config(config)
    if cfg["arch"] == "cnn":
        return SmallCNN(cfg["in_channels"], cfg["image_size"], cfg["n_classes"], cfg["width"], cfg["dropout"])
    return MLPClassifier(cfg["in_features"], cfg["n_classes"], cfg["width"], cfg["dropout"])


def load_backbone(model: Classifier, state: Mapping[str, Any]) -> bool:
    """Load the backbone of ``state`` into ``model``, and its head when shapes match.

    This is the transfer step: a checkpoint from an earlier run initialises a new model.
    The head is kept fresh when the class count differs (its shape differs), and copied
    otherwise.

    Parameters
    ----------
    model : Classifier
        The model to initialise, modified in place.
    state : dict
        A state dict of a :class:`Classifier` of the same architecture (the
        ``best_state`` of a run, or a checkpoint dict holding one).

    Returns
    -------
    bool
        Whether the head was copied too.

    Raises
    ------
    ValueError
        If the backbone weights are missing or do not fit ``model`` (another
        architecture, input size or width).
    """
    if "best_state" in state and isinstance(state["best_state"], dict):
        state = state["best_state"]
    own = model.state_dict()
    backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    expected = {k for k in own if k.startswith("backbone.")}
    if set(backbone) != expected:
        missing, extra = sorted(expected - set(backbone)), sorted(set(backbone) - expected)
        raise ValueError(
            f"init_state does not hold this model's backbone (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    for key, value in backbone.items():
        if value.shape != own[key].shape:
            raise ValueError(
                f"init_state backbone does not fit this model: {key} has shape "
                f"{tuple(value.shape)}, expected {tuple(own[key].shape)}"
            )
    head = {k: v for k, v in state.items() if k.startswith("head.")}
    copy_head = bool(head) and all(k in own and own[k].shape == v.shape for k, v in head.items())
    model.load_state_dict({**own, **backbone, **(head if copy_head else {})})
    logger.info("loaded backbone weights%s", " and head" if copy_head else "; new head")
    return copy_head
