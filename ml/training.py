"""Supervised training of the networks in :mod:`ml.nets` on in-memory arrays.

The loop is kept apart from the networks, in the shape of torchvision's
``references/classification/train.py``: :func:`train_one_epoch` and :func:`evaluate`
work on any classifier, loss and batch iterable; :func:`fit` puts them together with
early stopping, class balance, augmentation, transfer and resumable checkpoints. Batching
lives in :mod:`ml.batches`; prediction, embeddings and the model download in
:mod:`ml.inference`.

The training set is gold + consensus + pseudo-labels, each row with a sample weight
(pseudo-labels weighted by confidence). The validation set drives early stopping and
model selection, so **the caller must pass human-verified labels only**, disjoint from
the training rows; :func:`fit` never moves rows between the two.

Conventions
-----------
- The device is chosen once per call (:func:`choose_device`): CUDA when available, with
  mixed precision (``torch.autocast`` + ``GradScaler``), else the CPU.
- Runs are seeded explicitly by ``config["seed"]`` and are bit-for-bit reproducible on
  the CPU. :func:`fit` restores the caller's global RNG state when it returns.
- Data are converted once to tensors (pinned on CUDA, or moved to the GPU when small)
  and batched by index permutation, without ``DataLoader`` workers.
- Checkpoints are plain dicts of tensors and JSON-able values, written atomically and
  read with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy import ndarray

from ml.augment import Augment
from ml.batches import TensorBatches, as_inputs, choose_device

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from numpy.typing import ArrayLike

from ml.config import TRAIN_DEFAULTS, _check, _is_int, _is_number, resolve_config  # noqa: F401 (re-exported)
from ml.nets import Classifier, build_model, load_backbone

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"

class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to stop :func:`fit` cleanly (a cancel).

    The epoch that just ended is kept (and checkpointed); :func:`fit` returns its
    :class:`FitResult` with ``stop_reason="cancelled"``.
    """


@dataclasses.dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    model : Classifier
        The network with the best weights loaded, in eval mode, on ``device``.
    best_state : dict
        State dict (CPU tensors) of the best epoch: lowest validation loss (or highest
        accuracy, per ``config["monitor"]``); the last epoch without validation data.
    best_epoch : int
        1-based epoch of ``best_state``.
    history : list of dict
        One row per epoch run: ``epoch``, ``train_loss`` (weighted), ``val_loss``,
        ``val_accuracy`` (``None`` without validation data), ``lr``, ``seconds``.
    metrics : dict
        :func:`evaluate` on the validation set at the best epoch (``loss``,
        ``accuracy``, ``per_class_accuracy``, ``confusion_matrix``, ``n``); empty
        without validation data.
    config : dict
        The resolved config (defaults and input shape filled in), JSON-able; what
        :func:`ml.nets.build_model` and :func:`ml.inference.export_model` need.
    stop_reason : str
        ``"completed"`` (ran ``epochs``), ``"early_stopping"`` or ``"cancelled"``.
    device : str
        Device the run used.
    """

    model: Classifier
    best_state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    config: dict[str, Any]
    stop_reason: str
    device: str


# ---------------------------------------------------------------------------- config


def _input_shape(cfg: Mapping[str, Any]) -> tuple[int, ...]:
    if cfg["arch"] == "mlp":
        return (cfg["in_features"],)
    size = cfg["image_size"]
    height, width = (size, size) if _is_int(size) else size
    return (cfg["in_channels"], height, width)


def _as_labels(y: ArrayLike, n: int, n_classes: int, name: str) -> ndarray:
    y = np.asarray(y)
    _check(y.shape == (n,), f"{name} has shape {y.shape}, expected ({n},)")
    _check(
        n == 0 or np.issubdtype(y.dtype, np.integer), f"{name} must hold integer class indices, got {y.dtype}"
    )
    y = y.astype(np.int64)
    if n:
        _check(
            y.min() >= 0,
            f"{name} has unlabeled (-1) or negative entries; give unlabeled rows weight 0 or drop them",
        )
        _check(y.max() < n_classes, f"{name} has label {y.max()} but n_classes is {n_classes}")
    return y


def _shares_rows(a: object, b: object) -> bool:
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.may_share_memory(a, b)):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=10**6))  # type: ignore[arg-type]
    except np.exceptions.TooHardError:
        return True


def class_weights(y: ArrayLike, sample_weight: ArrayLike, n_classes: int) -> ndarray:
    """Class weights inverse to weighted class frequency (scikit-learn's "balanced").

    ``weight[c] = total / (n_present * total_c)``, where ``total_c`` is the summed sample
    weight of class ``c`` and ``n_present`` the number of classes with rows; absent
    classes get 0. A balanced training set gets all ones.
    """
    totals = np.bincount(y, weights=sample_weight, minlength=n_classes).astype(np.float64)
    present = totals > 0
    weights = np.zeros(n_classes)
    weights[present] = totals.sum() / (present.sum() * totals[present])
    return weights


# ------------------------------------------------------------------------------ loop


def weighted_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean of per-sample cross-entropy times ``weight``.

    Weights are used as given, not renormalised per batch: :func:`fit` scales them to a
    mean of 1 over the training set, so a batch of low-confidence pseudo-labels weighs
    less than a batch of gold labels. A row with weight 0 contributes nothing.
    """
    loss = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    if weight is None:
        return loss.mean()
    return (loss * weight).mean()


def _amp_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def train_one_epoch(
    model: Classifier,
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loader: Iterable[tuple[torch.Tensor, ...]],
    device: torch.device | str,
    scaler: torch.amp.GradScaler | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Run one pass over ``loader``, updating ``model`` in place.

    Parameters
    ----------
    model : torch.nn.Module
        Put in train mode here.
    loss_fn : callable
        ``loss_fn(logits, y, w)`` -> scalar tensor, ``w`` being ``None`` when batches
        carry no weights (see :func:`weighted_cross_entropy`).
    optimizer : torch.optim.Optimizer
    loader : iterable
        Batches ``(x, y)`` or ``(x, y, w)`` already on ``device``.
    device : torch.device
    scaler : torch.amp.GradScaler, optional
        When given and enabled, the forward pass runs under ``torch.autocast`` (float16 on
        CUDA, bfloat16 elsewhere) and gradients are scaled.
    augment : callable, optional
        ``augment(x) -> x`` applied to every input batch (train time only).

    Returns
    -------
    dict
        ``loss`` (mean of the batch losses weighted by batch size), ``n`` (rows seen)
        and ``seconds``.
    """
    device = torch.device(device)
    model.train()
    amp = scaler is not None and scaler.is_enabled()
    start = time.perf_counter()
    total = torch.zeros((), device=device)
    n = 0
    for batch in loader:
        x, y = batch[0], batch[1]
        w = batch[2] if len(batch) > 2 else None
        if augment is not None:
            x = augment(x)
        with torch.autocast(device.type, dtype=_amp_dtype(device), enabled=amp):
            logits = model(x)
        loss = loss_fn(logits.float(), y, w)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        total += loss.detach() * y.shape[0]
        n += y.shape[0]
    _check(n > 0, "the training loader yielded no rows")
    return {"loss": float(total) / n, "n": n, "seconds": time.perf_counter() - start}


@torch.inference_mode()
def evaluate(
    model: Classifier, loader: Iterable[tuple[torch.Tensor, ...]], device: torch.device | str
) -> dict[str, Any]:
    """Score ``model`` on labelled batches, without augmentation and without weights.

    Parameters
    ----------
    model : Classifier
        Put in eval mode here; ``model.n_classes`` (or the logit width) sets the
        confusion matrix size.
    loader : iterable
        Batches ``(x, y)`` or ``(x, y, w)`` on ``device``; weights are ignored.
    device : torch.device

    Returns
    -------
    dict
        ``loss`` (mean cross-entropy), ``accuracy``, ``per_class_accuracy`` (list, ``None``
        for a class without rows), ``confusion_matrix`` (list of lists, rows = true class,
        columns = predicted) and ``n``; plain Python values.

    Raises
    ------
    ValueError
        If the loader is empty.
    """
    model.eval()
    loss = torch.zeros((), device=device, dtype=torch.float64)
    confusion = None
    for batch in loader:
        x, y = batch[0], batch[1]
        logits = model(x).float()
        k = logits.shape[1]
        if confusion is None:
            confusion = torch.zeros(k * k, device=device, dtype=torch.int64)
        loss += F.cross_entropy(logits, y, reduction="sum").double()
        confusion += torch.bincount(y * k + logits.argmax(1), minlength=k * k)
    if confusion is None:
        raise ValueError("cannot evaluate on an empty set")
    confusion = confusion.view(k, k).cpu()
    n = int(confusion.sum())
    support = confusion.sum(1)
    correct = confusion.diag()
    return {
        "loss": float(loss) / n,
        "accuracy": float(correct.sum()) / n,
        "per_class_accuracy": [float(c) / int(s) if s else None for c, s in zip(correct, support, strict=True)],
        "confusion_matrix": confusion.tolist(),
        "n": n,
    }


class EarlyStopping:
    """Track the best validation score and say when ``patience`` epochs went without one.

    Parameters
    ----------
    patience : int
        Epochs without improvement after which to stop.
    min_delta : float, default=0.0
        Smallest change that counts as an improvement.
    mode : {"min", "max"}, default="min"
        Whether lower (loss) or higher (accuracy) is better.
    start_from_epoch : int, default=0
        Warm-up: up to this epoch each epoch is taken as the best so far and none counts
        towards ``patience`` (Keras' ``EarlyStopping(start_from_epoch=...)``). With a
        small validation set and a decaying learning rate, the validation loss can reach
        its minimum in the first, high-learning-rate epochs, before the model is good.
    """

    def __init__(self, patience: int, min_delta: float = 0.0, mode: str = "min", start_from_epoch: int = 0) -> None:
        self.patience = patience
        self.min_delta = min_delta
        self.sign = 1.0 if mode == "min" else -1.0
        self.start_from_epoch = start_from_epoch
        self.best = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record ``value`` for ``epoch``; return whether it is the new best."""
        score = self.sign * value
        if epoch <= self.start_from_epoch or score < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience


def _lr_at(epoch: int, cfg: Mapping[str, Any]) -> float:
    if cfg["lr_schedule"] == "constant":
        return cfg["lr"]
    return cfg["lr"] * 0.5 * (1.0 + math.cos(math.pi * (epoch - 1) / cfg["epochs"]))


# ------------------------------------------------------------------------ checkpoints


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    A reader sees the previous checkpoint or the new one, never a partial file.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (a directory or the file itself).

    Uses ``torch.load(..., weights_only=True)``: tensors and plain Python values only,
    no code execution. Tensors are mapped to the CPU.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_NAME)
    return torch.load(path, map_location="cpu", weights_only=True)


def _cpu_state(model: Classifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _fingerprint(X: ndarray, y: ndarray, w: ndarray, X_val: ndarray | None, y_val: ndarray | None) -> dict[str, Any]:
    def total(a: ndarray | None) -> float:
        return 0.0 if a is None else float(np.sum(a, dtype=np.float64))

    return {
        "n_train": int(len(y)),
        "n_val": 0 if y_val is None else int(len(y_val)),
        "checksum": [total(X), total(y * w), total(X_val), total(y_val)],
    }


# ------------------------------------------------------------------------------- fit


def _prepare(
    X_train: ArrayLike,
    y_train: ArrayLike,
    sample_weight: ArrayLike | None,
    X_val: ArrayLike | None,
    y_val: ArrayLike | None,
    config: Mapping[str, Any],
) -> tuple[dict[str, Any], ndarray, ndarray, ndarray, ndarray | None, ndarray | None]:
    _check((X_val is None) == (y_val is None), "pass both X_val and y_val, or neither")
    _check(
        not (X_val is not None and _shares_rows(X_train, X_val)),
        "X_val shares memory with X_train: validation rows must be distinct from training rows",
    )
    cfg = resolve_config(config, X_train)
    shape = _input_shape(cfg)
    X = as_inputs(X_train, shape, "X_train")
    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    _check(w.shape == (n,), f"sample_weight has shape {w.shape}, expected ({n},)")
    _check(bool(np.isfinite(w).all()) and bool((w >= 0).all()), "sample_weight must be finite and >= 0")
    y = np.asarray(y_train)
    _check(y.shape == (n,), f"y_train has shape {y.shape}, expected ({n},)")
    keep = w > 0
    X, y, w = X[keep], y[keep], w[keep]
    _check(len(X) > 0, "empty training set: no row has a positive sample_weight")
    y = _as_labels(y, len(X), cfg["n_classes"], "y_train")
    if X_val is None or y_val is None:
        return cfg, X, y, w, None, None
    X_v = as_inputs(X_val, shape, "X_val")
    _check(len(X_v) > 0, "X_val is empty; pass X_val=None, y_val=None to train without validation")
    return cfg, X, y, w, X_v, _as_labels(y_val, len(X_v), cfg["n_classes"], "y_val")


def _loss_weights(y: ndarray, w: ndarray, cfg: Mapping[str, Any]) -> tuple[ndarray, ndarray | None]:
    """Per-row loss weights (mean 1) and sampler probabilities for ``class_balance``."""
    if cfg["class_balance"] == "sampler":
        probs = w * class_weights(y, w, cfg["n_classes"])[y]
        return np.ones_like(w), probs / probs.sum()
    if cfg["class_balance"] == "weights":
        w = w * class_weights(y, w, cfg["n_classes"])[y]
    return w / w.mean(), None


def fit(
    X_train: ArrayLike,
    y_train: ArrayLike,
    sample_weight: ArrayLike | None,
    X_val: ArrayLike | None,
    y_val: ArrayLike | None,
    config: Mapping[str, Any],
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    init_state: Mapping[str, Any] | None = None,
    on_epoch: Callable[[int, int, dict[str, Any]], None] | None = None,
    device: str | torch.device | None = None,
) -> FitResult:
    """Train a network with early stopping on a human-verified validation set.

    Parameters
    ----------
    X_train : array-like
        Training inputs: images ``(N, C, H, W)``, ``(N, H, W)`` or flat ``(N, C*H*W)``
        for ``arch="cnn"``; vectors ``(N, F)`` for ``arch="mlp"``. Gold, consensus and
        pseudo-labelled rows together.
    y_train : array-like of int, shape (N,)
        Class indices in ``[0, n_classes)``.
    sample_weight : array-like of float, shape (N,), or None
        Per-row weight (1 for gold, the confidence for a pseudo-label). Rows with weight 0
        are dropped before anything else, so a run with them equals a run without them.
        ``None`` means all ones.
    X_val, y_val : array-like or None
        Validation set, for early stopping and choosing the best epoch. **Must hold
        human-verified labels only and no training row** (the caller guarantees it;
        ``fit`` never adds training rows to it and refuses an ``X_val`` sharing memory
        with ``X_train``). ``None`` for both trains ``epochs`` epochs and keeps the last.
    config : dict
        Model keys (:func:`ml.nets.build_model`; ``n_classes`` is required, the input
        shape is read from ``X_train`` when left out) and training keys, defaults in
        :data:`TRAIN_DEFAULTS`:

        - ``epochs`` (30), ``batch_size`` (64), ``lr`` (3e-3, AdamW), ``weight_decay``
          (1e-4), ``lr_schedule`` (``"cosine"`` over ``epochs`` or ``"constant"``);
        - ``patience`` (5) epochs without a ``min_delta`` (0.0) improvement of
          ``monitor`` (``"val_loss"`` or ``"val_accuracy"``) stop the run; the first
          ``start_from_epoch`` epochs (default ``None``: ``epochs // 2``) are a warm-up,
          neither counted nor kept as best over a later epoch (see
          :class:`EarlyStopping`; on digits with 20-60 validation labels, selecting by
          validation loss from epoch 1 kept high-learning-rate epochs 4-6 of 40 and lost
          3-7 points of test accuracy); 0 gives plain early stopping;
        - ``class_balance``: ``"weights"`` (loss weights inverse to weighted class
          frequency), ``"sampler"`` (rows drawn with replacement, classes equally
          likely, rows within a class by weight) or ``"none"``;
        - ``label_smoothing`` (0.0); ``augment`` (``None``, or a dict for
          :class:`ml.augment.Augment`, applied to training batches only);
        - ``freeze_backbone`` (False): train the head only, backbone fixed;
        - ``amp`` (True): mixed precision, used on CUDA only;
        - ``seed`` (0); ``eval_batch_size`` (512); ``max_device_bytes`` (1 GiB; on CUDA
          a dataset at most this big is moved to the GPU once, else pinned).
    checkpoint_dir : str or path, optional
        Directory for ``checkpoint.pt``, rewritten atomically after every epoch.
    resume : bool, default=True
        If ``checkpoint_dir`` holds a checkpoint, continue from its last epoch (model,
        optimizer, RNG states, history, best state): a killed run picks up where it
        stopped and ends as the uninterrupted run would. A finished run returns at once.
        The config and data must be the ones it was started with. ``False`` starts over.
    init_state : dict, optional
        State dict (or checkpoint) of an earlier run of the same architecture: its
        backbone (and input standardisation) is loaded, and its head too when the class
        count is the same (see :func:`ml.nets.load_backbone`). Ignored when resuming.
    on_epoch : callable, optional
        ``on_epoch(epoch, n_epochs, metrics)`` after each epoch (and its checkpoint), with
        that epoch's history row. Raise :class:`StopTraining` in it to stop cleanly.
    device : str or torch.device, optional
        Defaults to :func:`choose_device`.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        On an invalid config (unknown key or arch, ``n_classes < 2``...), an empty
        training set, labels out of range, mismatched shapes, or a checkpoint written
        with another config or other data.

    Notes
    -----
    Deterministic on the CPU: the same data, config and seed give identical weights.
    The caller's global torch RNG state is restored on return.
    """
    device = choose_device(device)
    cfg, X, y, w, X_val, y_val = _prepare(X_train, y_train, sample_weight, X_val, y_val, config)
    cuda_devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=cuda_devices):
        return _fit(cfg, X, y, w, X_val, y_val, checkpoint_dir, resume, init_state, on_epoch, device)


def _fit(
    cfg: dict[str, Any],
    X: ndarray,
    y: ndarray,
    w: ndarray,
    X_val: ndarray | None,
    y_val: ndarray | None,
    checkpoint_dir: str | os.PathLike[str] | None,
    resume: bool,
    init_state: Mapping[str, Any] | None,
    on_epoch: Callable[[int, int, dict[str, Any]], None] | None,
    device: torch.device,
) -> FitResult:
    fingerprint = _fingerprint(X, y, w, X_val, y_val)
    path = None
    checkpoint = None
    if checkpoint_dir is not None:
        os.makedirs(checkpoint_dir, exist_ok=True)
        path = os.path.join(os.fspath(checkpoint_dir), CHECKPOINT_NAME)
        if resume and os.path.exists(path):
            checkpoint = load_checkpoint(path)
            _check(
                checkpoint.get("config") == cfg,
                f"checkpoint in {checkpoint_dir} was written with another config; pass resume=False or a new directory",
            )
            _check(
                checkpoint.get("data") == fingerprint,
                f"checkpoint in {checkpoint_dir} was written for other training or validation data",
            )

    torch.manual_seed(cfg["seed"])
    batch_rng = torch.Generator().manual_seed(cfg["seed"])
    augment_rng = torch.Generator(device=device).manual_seed(cfg["seed"] + 1)
    model = build_model(cfg)
    if checkpoint is None:
        if init_state is not None:
            load_backbone(model, init_state)
        else:
            model.standardize.set_statistics(torch.from_numpy(X))
    if cfg["freeze_backbone"]:
        if init_state is None and checkpoint is None:
            logger.warning("freeze_backbone without init_state: training a head over a random backbone")
        model.freeze_backbone()
    model.to(device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=cfg["lr"], weight_decay=cfg["weight_decay"]
    )
    scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" and cfg["amp"] else None

    stopper = EarlyStopping(
        cfg["patience"],
        cfg["min_delta"],
        "min" if cfg["monitor"] == "val_loss" else "max",
        cfg["start_from_epoch"],
    )
    history, best_state, best_epoch, best_metrics, start = [], None, 0, {}, 0
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        rng = checkpoint["rng"]
        torch.set_rng_state(rng["torch"])
        if device.type == "cuda" and rng.get("cuda") is not None:
            torch.cuda.set_rng_state(rng["cuda"], device)
        batch_rng.set_state(rng["batches"])
        augment_rng.set_state(rng["augment"])
        history, best_state, best_epoch = (
            checkpoint["history"],
            checkpoint["best_state"],
            checkpoint["best_epoch"],
        )
        best_metrics, start = checkpoint["best_metrics"], checkpoint["epoch"]
        for row in history:
            if row["val_loss"] is not None:
                stopper.step(row[cfg["monitor"]], row["epoch"])
        logger.info("resuming from epoch %d of %d (%s)", start, cfg["epochs"], path)

    weights, probs = _loss_weights(y, w, cfg)
    train_loader = TensorBatches(
        (torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(weights.astype(np.float32))),
        cfg["batch_size"],
        device,
        shuffle=True,
        generator=batch_rng,
        sample_probs=None if probs is None else torch.from_numpy(probs),
        merge_single=True,
        max_device_bytes=cfg["max_device_bytes"],
    )
    val_loader = None
    if X_val is not None:
        val_loader = TensorBatches(
            (torch.from_numpy(X_val), torch.from_numpy(y_val)),
            cfg["eval_batch_size"],
            device,
            max_device_bytes=cfg["max_device_bytes"],
        )
    augmenter = Augment.from_config(cfg["augment"])
    augment = partial(augmenter, generator=augment_rng) if augmenter.active else None
    loss_fn = partial(weighted_cross_entropy, label_smoothing=cfg["label_smoothing"])

    stop_reason = "completed"
    for epoch in range(start + 1, cfg["epochs"] + 1):
        if stopper.should_stop:
            break
        lr = _lr_at(epoch, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        started = time.perf_counter()
        train = train_one_epoch(model, loss_fn, optimizer, train_loader, device, scaler=scaler, augment=augment)
        row = {"epoch": epoch, "train_loss": train["loss"], "val_loss": None, "val_accuracy": None, "lr": lr}
        if val_loader is not None:
            val = evaluate(model, val_loader, device)
            row["val_loss"], row["val_accuracy"] = val["loss"], val["accuracy"]
            improved = stopper.step(row[cfg["monitor"]], epoch)
        else:
            val, improved = {}, True
        if improved:
            best_state, best_epoch, best_metrics = _cpu_state(model), epoch, val
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        if path is not None:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else None,
                    "epoch": epoch,
                    "config": cfg,
                    "data": fingerprint,
                    "history": history,
                    "best_state": best_state,
                    "best_epoch": best_epoch,
                    "best_metrics": best_metrics,
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                        "batches": batch_rng.get_state(),
                        "augment": augment_rng.get_state(),
                    },
                },
                path,
            )
        logger.info(
            "epoch %d/%d train_loss=%.4f val_loss=%s val_accuracy=%s (%.2fs)",
            epoch,
            cfg["epochs"],
            row["train_loss"],
            row["val_loss"],
            row["val_accuracy"],
            row["seconds"],
        )
        if on_epoch is not None:
            try:
                on_epoch(epoch, cfg["epochs"], dict(row))
            except StopTraining:
                logger.info("training cancelled after epoch %d", epoch)
                stop_reason = "cancelled"
                break
    if stop_reason != "cancelled" and stopper.should_stop:
        stop_reason = "early_stopping"
        logger.info("early stopping: best epoch %d, no improvement for %d epochs", best_epoch, cfg["patience"])

    assert best_state is not None, "every epoch up to start_from_epoch is kept as the best"
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(
        model=model,
        best_state=best_state,
        best_epoch=best_epoch,
        history=history,
        metrics=best_metrics,
        config=cfg,
        stop_reason=stop_reason,
        device=str(device),
    )
