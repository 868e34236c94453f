"""Using a trained network: batched prediction, embeddings, and the model download.

:func:`export_model` packs a state dict and a small JSON (model config, class names)
into one zip archive; :func:`load_model` reads it back with
``torch.load(..., weights_only=True)``, so a downloaded model never executes code.
"""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch
from numpy import ndarray

from ml.batches import TensorBatches, as_inputs, choose_device
from ml.nets import Classifier, build_model, model_config

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import IO

    from numpy.typing import ArrayLike

EXPORT_FORMAT = "crowdloop-model"
EXPORT_VERSION = 1


class LoadedModel(NamedTuple):
    """A model read back by :func:`load_model`."""

    model: Classifier
    config: dict[str, Any]
    classes: list[Any]


def _model_device(model: Classifier) -> torch.device:
    return next(model.parameters()).device


def _batches(model: Classifier, X: ArrayLike, device: str | torch.device | None, batch_size: int) -> TensorBatches:
    target = choose_device(device) if device is not None else _model_device(model)
    # Both walk every module: skipped when there is nothing to do (a served model
    # predicts one small batch per request).
    if _model_device(model) != target:
        model.to(target)
    if model.training:
        model.eval()
    inputs = torch.from_numpy(as_inputs(X, model.input_shape))
    return TensorBatches((inputs,), batch_size, target)


@contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads (``None``: leave them), then restore.

    A server predicting small batches is faster on one thread per request: on a busy
    machine, intra-op threads wait for each other and for the server's own workers.
    """
    previous = torch.get_num_threads()
    if n is not None and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@torch.inference_mode()
def predict(
    model: Classifier,
    X: ArrayLike,
    device: str | torch.device | None = None,
    batch_size: int = 512,
    num_threads: int | None = None,
) -> tuple[ndarray, ndarray]:
    """Predict classes and class probabilities, batch by batch, without augmentation.

    Parameters
    ----------
    model : Classifier
        Moved to ``device`` and put in eval mode.
    X : array-like
        Inputs as for :func:`ml.training.fit` (flat rows are reshaped to ``model.input_shape``).
    device : str or torch.device, optional
        Defaults to the model's device.
    batch_size : int, default=512
    num_threads : int, optional
        CPU threads for this call (see :func:`cpu_threads`); default: torch's setting.

    Returns
    -------
    labels : ndarray of int64, shape (N,)
    probabilities : ndarray of float32, shape (N, n_classes)
    """
    with cpu_threads(num_threads):
        batches = [torch.softmax(model(x).float(), dim=1).cpu() for (x,) in _batches(model, X, device, batch_size)]
    probs = torch.cat(batches).numpy() if batches else np.zeros((0, model.n_classes), dtype=np.float32)
    return probs.argmax(1).astype(np.int64), probs


@torch.inference_mode()
def embed(model: Classifier, X: ArrayLike, device: str | torch.device | None = None, batch_size: int = 512) -> ndarray:
    """Penultimate features (:meth:`ml.nets.Classifier.features`), shape ``(N, embed_dim)``.

    Same arguments as :func:`predict`; returns a float32 array.
    """
    out = [model.features(x).float().cpu() for (x,) in _batches(model, X, device, batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.embed_dim), dtype=np.float32)


def export_model(state: Mapping[str, torch.Tensor], config: Mapping[str, Any], classes: Sequence[Any]) -> bytes:
    """Pack a trained model for download: a zip of the state dict and a small JSON.

    Parameters
    ----------
    state : dict
        State dict, e.g. ``FitResult.best_state``.
    config : dict
        The run's config (``FitResult.config``); its model keys are kept.
    classes : sequence
        JSON-able class names, index ``i`` naming output ``i``.

    Returns
    -------
    bytes
        A zip archive with ``model.pt`` (the state dict, readable with
        ``torch.load(weights_only=True)``) and ``meta.json`` (format, version, model
        config, classes).

    Raises
    ------
    ValueError
        If ``state`` does not fit ``config`` or ``classes`` has the wrong length.
    """
    cfg = model_config(config)
    classes = list(classes)
    _require(
        len(classes) == cfg["n_classes"],
        f"{len(classes)} classes given for a model with n_classes={cfg['n_classes']}",
    )
    try:
        build_model(cfg).load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"state does not fit the config: {exc}") from exc
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "config": cfg, "classes": classes}
    weights = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, weights)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("meta.json", json.dumps(meta, indent=2, sort_keys=True))
        archive.writestr("model.pt", weights.getvalue())
    return out.getvalue()


def load_model(data: bytes | bytearray | str | IO[bytes], device: str | torch.device | None = None) -> LoadedModel:
    """Read a model written by :func:`export_model`.

    Parameters
    ----------
    data : bytes, path or binary file
    device : str or torch.device, optional
        Defaults to :func:`choose_device`.

    Returns
    -------
    LoadedModel
        ``(model, config, classes)``, the model in eval mode on ``device``.

    Raises
    ------
    ValueError
        If ``data`` is not such an archive.
    """
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    try:
        with zipfile.ZipFile(source) as archive:
            meta = json.loads(archive.read("meta.json"))
            weights = archive.read("model.pt")
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"not an exported Crowdloop model: {exc}") from exc
    _require(
        meta.get("format") == EXPORT_FORMAT and meta.get("version") == EXPORT_VERSION,
        f"unsupported model format {meta.get('format')!r} version {meta.get('version')!r}",
    )
    model = build_model(meta["config"])
    model.load_state_dict(torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True))
    model.to(choose_device(device)).eval()
    return LoadedModel(model, meta["config"], meta["classes"])


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
