"""Training configs, checked without PyTorch: the model keys (:mod:`ml.nets`), the
augmentation keys (:mod:`ml.augment`) and the training keys (:mod:`ml.training`).

A web request validates a config with these before it queues a run; importing PyTorch
there would cost seconds in a process that has not loaded it yet. The modules that
train re-export every name defined here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from numpy.typing import ArrayLike

# --- Model keys

ARCHS = ("cnn", "mlp")

#: Defaults for the model keys of a config, per architecture.
MODEL_DEFAULTS = {
    "cnn": {"width": 32, "dropout": 0.1},
    "mlp": {"width": 128, "dropout": 0.1},
}

#: Keys of a config that :func:`build_model` reads.
MODEL_KEYS = ("arch", "n_classes", "in_channels", "image_size", "in_features", "width", "dropout")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) for s in size):
        return int(size[0]), int(size[1])
    raise ValueError(f"image_size must be an int or a pair of ints, got {size!r}")


def _positive_int(config: Mapping[str, Any], key: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"config[{key!r}] must be a positive int, got {value!r}")
    return value


def model_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the model keys of ``config`` and return them with defaults filled in.

    Parameters
    ----------
    config : dict
        A model or training config; keys other than :data:`MODEL_KEYS` are ignored.

    Returns
    -------
    dict
        The model keys only, JSON-able, with defaults from :data:`MODEL_DEFAULTS`.

    Raises
    ------
    ValueError
        Unknown ``arch``, ``n_classes < 2``, a missing or invalid input shape, a
        non-positive ``width`` or ``dropout`` outside ``[0, 1)``.
    """
    arch = config.get("arch", "cnn")
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    n_classes = config.get("n_classes")
    if not isinstance(n_classes, int) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    out = {"arch": arch, "n_classes": n_classes, **MODEL_DEFAULTS[arch]}
    for key in ("width", "dropout"):
        if config.get(key) is not None:
            out[key] = config[key]
    _positive_int(out, "width")
    if not isinstance(out["dropout"], (int, float)) or not 0 <= out["dropout"] < 1:
        raise ValueError(f"dropout must be in [0, 1), got {out['dropout']!r}")
    out["dropout"] = float(out["dropout"])
    if arch == "cnn":
        out["in_channels"] = _positive_int(config, "in_channels")
        size = config.get("image_size")
        if size is None:
            raise ValueError("arch 'cnn' needs config['image_size'] (int or [height, width])")
        height, width_px = _pair(size)
        if min(height, width_px) < 2:
            raise ValueError(f"image_size must be at least 2 pixels, got {size!r}")
        out["image_size"] = size if isinstance(size, int) else [height, width_px]
    else:
        out["in_features"] = _positive_int(config, "in_features")
    return out


# --- Augmentation keys

#: Every key of an augmentation config and its default (every transform off).
AUGMENT_DEFAULTS = {
    "hflip": False,
    "shift": 0,
    "occlusion": 0.0,
    "occlusion_p": 0.5,
    "noise": 0.0,
}


def augment_validate(hflip: bool, shift: int, occlusion: float, occlusion_p: float, noise: float) -> None:
    """Raise ``ValueError`` on an augmentation value out of range (see
    :class:`ml.augment.Augment` for what each one does)."""
    if not isinstance(hflip, bool):
        raise ValueError(f"augment hflip must be true or false, got {hflip!r}")
    if not isinstance(shift, int) or isinstance(shift, bool) or shift < 0:
        raise ValueError(f"augment shift must be an int >= 0 (pixels), got {shift!r}")
    if not 0.0 <= occlusion <= 0.5:
        raise ValueError(f"augment occlusion is a max area fraction in [0, 0.5], got {occlusion!r}")
    if not 0.0 <= occlusion_p <= 1.0:
        raise ValueError(f"augment occlusion_p must be in [0, 1], got {occlusion_p!r}")
    if not noise >= 0.0:
        raise ValueError(f"augment noise must be >= 0, got {noise!r}")


def augment_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A full, checked augmentation dict from ``config`` (``None`` or ``{}``: all off).

    Raises
    ------
    ValueError
        On an unknown key or a value out of range.
    """
    config = dict(config or {})
    unknown = sorted(set(config) - set(AUGMENT_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown augment key(s) {unknown}; expected some of {sorted(AUGMENT_DEFAULTS)}")
    full = {**AUGMENT_DEFAULTS, **config}
    augment_validate(**full)
    return full


def augment_spatial(config: Mapping[str, Any]) -> bool:
    """Whether a full augmentation dict has a transform that needs images."""
    return bool(config["hflip"] or config["shift"] > 0 or config["occlusion"] > 0)


# --- Training keys

#: Training keys of a :func:`fit` config and their defaults (model keys: :mod:`ml.nets`).
TRAIN_DEFAULTS = {
    "epochs": 30,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 1e-4,
    "lr_schedule": "cosine",
    "patience": 5,
    "start_from_epoch": None,
    "min_delta": 0.0,
    "monitor": "val_loss",
    "class_balance": "weights",
    "label_smoothing": 0.0,
    "augment": None,
    "freeze_backbone": False,
    "amp": True,
    "seed": 0,
    "eval_batch_size": 512,
    "max_device_bytes": 1 << 30,
}

_CHOICES = {
    "lr_schedule": ("cosine", "constant"),
    "monitor": ("val_loss", "val_accuracy"),
    "class_balance": ("weights", "sampler", "none"),
}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def resolve_config(config: Mapping[str, Any], X: ArrayLike | None = None) -> dict[str, Any]:
    """Validate a :func:`fit` config and fill in defaults and the input shape.

    Parameters
    ----------
    config : dict
        Model keys (see :func:`ml.nets.build_model`) and training keys
        (:data:`TRAIN_DEFAULTS`). ``in_channels``/``image_size`` (``"cnn"``) or
        ``in_features`` (``"mlp"``) may be left out when ``X`` shows them: images
        ``(N, C, H, W)`` or ``(N, H, W)``, features ``(N, F)``.
    X : array-like, optional
        Training inputs, used only to infer the input shape.

    Returns
    -------
    dict
        A new JSON-able config with every key set; ``augment`` is ``None`` or a full
        augmentation dict.

    Raises
    ------
    ValueError
        On an unknown key or an invalid value, with the key in the message.
    """
    unknown = sorted(set(config) - set(MODEL_KEYS) - set(TRAIN_DEFAULTS))
    _check(not unknown, f"unknown config key(s) {unknown}")
    cfg = {**TRAIN_DEFAULTS, **config}
    arch = cfg.get("arch", "cnn")
    shape = None if X is None else np.shape(X)
    if arch == "cnn" and shape is not None and len(shape) in (3, 4):
        cfg.setdefault("in_channels", 1 if len(shape) == 3 else int(shape[1]))
        height, width = int(shape[-2]), int(shape[-1])
        cfg.setdefault("image_size", height if height == width else [height, width])
    elif arch == "mlp" and shape is not None and len(shape) == 2:
        cfg.setdefault("in_features", int(shape[1]))
    out = model_config(cfg)
    for key in ("epochs", "batch_size", "patience", "eval_batch_size", "max_device_bytes"):
        _check(
            _is_int(cfg[key]) and cfg[key] >= 1, f"config[{key!r}] must be a positive int, got {cfg[key]!r}"
        )
    _check(_is_number(cfg["lr"]) and cfg["lr"] > 0, f"config['lr'] must be > 0, got {cfg['lr']!r}")
    for key in ("weight_decay", "min_delta"):
        _check(_is_number(cfg[key]) and cfg[key] >= 0, f"config[{key!r}] must be >= 0, got {cfg[key]!r}")
    smoothing = cfg["label_smoothing"]
    _check(
        _is_number(smoothing) and 0 <= smoothing < 1,
        f"config['label_smoothing'] must be in [0, 1), got {smoothing!r}",
    )
    for key, choices in _CHOICES.items():
        _check(cfg[key] in choices, f"config[{key!r}] must be one of {', '.join(choices)}; got {cfg[key]!r}")
    for key in ("freeze_backbone", "amp"):
        _check(isinstance(cfg[key], bool), f"config[{key!r}] must be true or false, got {cfg[key]!r}")
    if cfg["start_from_epoch"] is None:
        cfg["start_from_epoch"] = cfg["epochs"] // 2
    for key in ("seed", "start_from_epoch"):
        _check(_is_int(cfg[key]) and cfg[key] >= 0, f"config[{key!r}] must be an int >= 0, got {cfg[key]!r}")
    augment = augment_config(cfg["augment"])
    if out["arch"] == "mlp" and augment_spatial(augment):
        raise ValueError("arch 'mlp' takes feature vectors: only the 'noise' augmentation applies")
    for key in TRAIN_DEFAULTS:
        out[key] = cfg[key]
    for key in ("lr", "weight_decay", "min_delta", "label_smoothing"):
        out[key] = float(out[key])
    out["augment"] = augment if augment_spatial(augment) or augment["noise"] > 0 else None
    return out
