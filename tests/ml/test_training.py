import json
import os

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ml.batches import TensorBatches
from ml.inference import embed, export_model, load_model, predict
from ml.nets import build_model
from ml.training import (
    EarlyStopping,
    StopTraining,
    class_weights,
    evaluate,
    fit,
    load_checkpoint,
    train_one_epoch,
    weighted_cross_entropy,
)

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    return {"X": X[:400], "y": y[:400], "X_val": X[1400:1600], "y_val": y[1400:1600]}


def tiny(**overrides):
    return {
        "arch": "cnn",
        "n_classes": 10,
        "width": 4,
        "epochs": 3,
        "batch_size": 32,
        "patience": 3,
        **overrides,
    }


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_tiny_run_reduces_loss_and_beats_chance(digits):
    result = fit(
        digits["X"],
        digits["y"],
        None,
        digits["X_val"],
        digits["y_val"],
        tiny(width=8, epochs=6),
        device="cpu",
    )
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert result.metrics["accuracy"] > 0.6
    labels, probabilities = predict(result.model, digits["X_val"], "cpu")
    assert np.mean(labels == digits["y_val"]) == pytest.approx(result.metrics["accuracy"])
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
    assert result.config["in_channels"] == 1 and result.config["image_size"] == 8
    assert json.loads(json.dumps(result.config)) == result.config
    assert result.device == "cpu"


def test_mlp_over_feature_vectors_beats_chance(digits):
    X = digits["X"].reshape(400, -1)
    config = {
        "arch": "mlp",
        "n_classes": 10,
        "width": 32,
        "epochs": 6,
        "lr": 1e-2,
        "augment": {"noise": 0.01},
    }
    result = fit(
        X, digits["y"], None, digits["X_val"].reshape(200, -1), digits["y_val"], config, device="cpu"
    )
    assert result.config["in_features"] == 64
    assert result.metrics["accuracy"] > 0.6


def test_early_stopping_picks_the_best_epoch_and_stops_after_patience(digits):
    wrong_val_labels = (digits["y_val"] + 1) % 10
    result = fit(
        digits["X"],
        digits["y"],
        None,
        digits["X_val"],
        wrong_val_labels,
        tiny(epochs=30, patience=2, lr_schedule="constant", start_from_epoch=0),
        device="cpu",
    )
    val_losses = [row["val_loss"] for row in result.history]
    assert result.stop_reason == "early_stopping"
    assert result.best_epoch == int(np.argmin(val_losses)) + 1
    assert len(result.history) == result.best_epoch + 2
    assert result.metrics["loss"] == val_losses[result.best_epoch - 1]
    model = build_model(result.config)
    model.load_state_dict(result.best_state)
    val = TensorBatches((torch.from_numpy(digits["X_val"]), torch.from_numpy(wrong_val_labels)), 512, CPU)
    assert evaluate(model, val, CPU)["loss"] == pytest.approx(result.metrics["loss"])


@pytest.mark.parametrize(
    "mode, values, best, stop_after",
    [
        ("min", [1.0, 0.8, 0.9, 0.7, 0.9, 0.75], 4, 6),
        ("max", [0.5, 0.6, 0.6, 0.6], 2, 4),
    ],
)
def test_early_stopping_counts_epochs_since_the_best(mode, values, best, stop_after):
    stopper = EarlyStopping(patience=2, mode=mode)
    for epoch, value in enumerate(values, start=1):
        stopper.step(value, epoch)
        assert stopper.should_stop == (epoch >= stop_after)
    assert stopper.best_epoch == best


def test_early_stopping_warm_up_keeps_the_latest_epoch_and_counts_nothing():
    stopper = EarlyStopping(patience=2, start_from_epoch=3)
    improved = [stopper.step(value, epoch) for epoch, value in enumerate([0.5, 0.9, 1.0, 1.1, 0.8], start=1)]
    assert improved == [True, True, True, False, True]
    assert stopper.best_epoch == 5 and not stopper.should_stop


def test_default_warm_up_is_half_the_epochs_so_an_early_minimum_is_not_kept(digits):
    wrong_val_labels = (digits["y_val"] + 1) % 10
    result = fit(
        digits["X"],
        digits["y"],
        None,
        digits["X_val"],
        wrong_val_labels,
        tiny(epochs=12, patience=2, lr_schedule="constant"),
        device="cpu",
    )
    assert result.config["start_from_epoch"] == 6
    assert result.best_epoch >= 6
    assert len(result.history) == result.best_epoch + 2


def test_training_without_validation_runs_every_epoch_and_keeps_the_last(digits):
    result = fit(digits["X"], digits["y"], None, None, None, tiny(epochs=2), device="cpu")
    assert result.stop_reason == "completed"
    assert result.best_epoch == 2 and len(result.history) == 2
    assert result.history[-1]["val_loss"] is None and result.metrics == {}


def test_rows_weighted_zero_are_excluded(digits):
    X, y = digits["X"][:200], digits["y"][:200]
    pseudo_X, pseudo_y = digits["X"][200:], (digits["y"][200:] + 3) % 10
    pseudo_y[:5] = -1
    with_pseudo = fit(
        np.concatenate([X, pseudo_X]),
        np.concatenate([y, pseudo_y]),
        np.r_[np.ones(200), np.zeros(200)],
        digits["X_val"],
        digits["y_val"],
        tiny(),
        device="cpu",
    )
    without = fit(X, y, None, digits["X_val"], digits["y_val"], tiny(), device="cpu")
    assert_same_state(with_pseudo.best_state, without.best_state)
    assert without_timing(with_pseudo.history) == without_timing(without.history)


def without_timing(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def test_sample_weights_change_the_training(digits):
    weights = np.linspace(0.1, 1.0, 400)
    weighted = fit(digits["X"], digits["y"], weights, None, None, tiny(epochs=1), device="cpu")
    plain = fit(digits["X"], digits["y"], None, None, None, tiny(epochs=1), device="cpu")
    assert not torch.equal(weighted.best_state["head.weight"], plain.best_state["head.weight"])


def test_class_weights_are_inverse_to_weighted_frequency():
    y = np.array([0, 0, 0, 1, 2, 2])
    w = np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.5])
    weights = class_weights(y, w, n_classes=4)
    np.testing.assert_allclose(weights, [5 / 9, 5 / 3, 5 / 3, 0.0])
    np.testing.assert_allclose(np.bincount(y, weights=w * weights[y]), [5 / 3, 5 / 3, 5 / 3])


@pytest.mark.parametrize("class_balance", ["sampler", "none"])
def test_other_class_balance_modes_learn(digits, class_balance):
    result = fit(
        digits["X"],
        digits["y"],
        None,
        digits["X_val"],
        digits["y_val"],
        tiny(width=8, epochs=4, class_balance=class_balance),
        device="cpu",
    )
    assert result.metrics["accuracy"] > 0.5


def test_weighted_cross_entropy_ignores_rows_weighted_zero():
    logits = torch.randn(4, 3)
    target = torch.tensor([0, 1, 2, 1])
    full = weighted_cross_entropy(logits, target, torch.tensor([2.0, 2.0, 0.0, 0.0]))
    assert full == pytest.approx(float(weighted_cross_entropy(logits[:2], target[:2])))


def test_same_seed_gives_identical_weights_and_leaves_the_global_rng_alone(digits):
    config = tiny(augment={"shift": 1, "occlusion": 0.25, "noise": 0.05}, dropout=0.3)
    torch.manual_seed(42)
    first = fit(digits["X"], digits["y"], None, digits["X_val"], digits["y_val"], config, device="cpu")
    after_fit = torch.rand(3)
    torch.manual_seed(42)
    expected = torch.rand(3)
    second = fit(digits["X"], digits["y"], None, digits["X_val"], digits["y_val"], config, device="cpu")
    other_seed = fit(
        digits["X"], digits["y"], None, digits["X_val"], digits["y_val"], {**config, "seed": 1}, device="cpu"
    )
    assert_same_state(first.best_state, second.best_state)
    assert not torch.equal(first.best_state["head.weight"], other_seed.best_state["head.weight"])
    assert torch.equal(after_fit, expected)


def test_resume_continues_from_the_checkpoint(digits, tmp_path):
    config = tiny(epochs=4, augment={"shift": 1, "occlusion": 0.25}, dropout=0.3)
    args = (digits["X"], digits["y"], None, digits["X_val"], digits["y_val"], config)
    uninterrupted = fit(*args, device="cpu")

    def kill_after_two(epoch, n_epochs, metrics):
        if epoch == 2:
            raise StopTraining

    killed = fit(*args, checkpoint_dir=tmp_path, on_epoch=kill_after_two, device="cpu")
    assert killed.stop_reason == "cancelled" and len(killed.history) == 2
    assert load_checkpoint(tmp_path)["epoch"] == 2

    seen = []
    resumed = fit(*args, checkpoint_dir=tmp_path, on_epoch=lambda *a: seen.append(a[:2]), device="cpu")
    assert seen == [(3, 4), (4, 4)]
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[:2] == killed.history
    assert_same_state(resumed.best_state, uninterrupted.best_state)
    assert resumed.best_epoch == uninterrupted.best_epoch

    seen.clear()
    again = fit(*args, checkpoint_dir=tmp_path, on_epoch=lambda *a: seen.append(a), device="cpu")
    assert seen == [] and again.history == resumed.history
    assert_same_state(again.best_state, resumed.best_state)


def test_resume_false_starts_over(digits, tmp_path):
    args = (digits["X"], digits["y"], None, None, None, tiny(epochs=1))
    fit(*args, checkpoint_dir=tmp_path, device="cpu")
    seen = []
    fit(*args, checkpoint_dir=tmp_path, resume=False, on_epoch=lambda *a: seen.append(a[0]), device="cpu")
    assert seen == [1]


def test_resume_with_another_config_is_refused(digits, tmp_path):
    fit(digits["X"], digits["y"], None, None, None, tiny(epochs=1), checkpoint_dir=tmp_path, device="cpu")
    with pytest.raises(ValueError, match="another config"):
        fit(
            digits["X"],
            digits["y"],
            None,
            None,
            None,
            tiny(epochs=1, lr=0.1),
            checkpoint_dir=tmp_path,
            device="cpu",
        )
    with pytest.raises(ValueError, match="other training or validation data"):
        fit(
            digits["X"][:300],
            digits["y"][:300],
            None,
            None,
            None,
            tiny(epochs=1),
            checkpoint_dir=tmp_path,
            device="cpu",
        )


def test_checkpoint_is_a_plain_dict_that_loads_with_weights_only(digits, tmp_path):
    fit(
        digits["X"],
        digits["y"],
        None,
        digits["X_val"],
        digits["y_val"],
        tiny(epochs=2),
        checkpoint_dir=tmp_path,
        device="cpu",
    )
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "epoch", "config", "history", "best_state", "best_epoch", "rng"} <= set(
        checkpoint
    )
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    assert checkpoint["config"]["width"] == 4
    assert isinstance(checkpoint["rng"]["torch"], torch.Tensor)


def test_transfer_loads_the_backbone_with_a_new_head_and_a_frozen_backbone_stays_unchanged(digits):
    source = fit(digits["X"], digits["y"], None, None, None, tiny(epochs=2), device="cpu")
    keep = digits["y"] < 3
    target = fit(
        digits["X"][keep],
        digits["y"][keep],
        None,
        None,
        None,
        tiny(n_classes=3, epochs=2, freeze_backbone=True),
        init_state=source.best_state,
        device="cpu",
    )
    backbone = [k for k in source.best_state if k.startswith("backbone.")]
    for key in backbone:
        assert torch.equal(target.best_state[key], source.best_state[key]), key
    assert target.best_state["head.weight"].shape == (3, target.model.embed_dim)
    assert target.model.head.out_features == 3


def test_transfer_without_freezing_starts_from_the_loaded_backbone(digits):
    source = fit(digits["X"], digits["y"], None, None, None, tiny(epochs=2), device="cpu")
    config = tiny(epochs=1, lr=1e-9, lr_schedule="constant", weight_decay=0.0)
    target = fit(
        digits["X"], digits["y"], None, None, None, config, init_state=source.best_state, device="cpu"
    )
    assert torch.equal(target.best_state["backbone.0.mean"], source.best_state["backbone.0.mean"])
    torch.testing.assert_close(
        target.best_state["backbone.1.weight"], source.best_state["backbone.1.weight"], atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    "config, weights, message",
    [
        (tiny(arch="transformer"), None, "unknown arch 'transformer'"),
        (tiny(n_classes=1), None, "n_classes must be an int >= 2"),
        (tiny(), np.zeros(400), "empty training set"),
        (tiny(epoch=3), None, "unknown config key"),
        (tiny(class_balance="oversample"), None, "class_balance"),
        (tiny(start_from_epoch=-1), None, "start_from_epoch"),
        (tiny(arch="mlp", augment={"shift": 1}), None, "only the 'noise' augmentation"),
        (tiny(n_classes=5), None, "n_classes is 5"),
    ],
)
def test_bad_config_raises_a_clear_error(digits, config, weights, message):
    X = digits["X"].reshape(400, -1) if config["arch"] == "mlp" else digits["X"]
    with pytest.raises(ValueError, match=message):
        fit(X, digits["y"], weights, None, None, config, device="cpu")


def test_unlabeled_training_rows_and_validation_sharing_training_rows_are_refused(digits):
    y = digits["y"].copy()
    y[0] = -1
    with pytest.raises(ValueError, match="unlabeled"):
        fit(digits["X"], y, None, None, None, tiny(), device="cpu")
    with pytest.raises(ValueError, match="distinct from training rows"):
        fit(digits["X"], digits["y"], None, digits["X"][:100], digits["y"][:100], tiny(), device="cpu")


def test_evaluate_reports_loss_accuracy_per_class_and_confusion():
    class Logits(torch.nn.Module):
        def forward(self, x):
            return x

    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0], [0, 0, 5.0]])
    y = torch.tensor([0, 1, 1, 0])
    batches = TensorBatches((logits, y), batch_size=3, device=CPU)
    metrics = evaluate(Logits(), batches, CPU)
    assert metrics["accuracy"] == 0.5 and metrics["n"] == 4
    assert metrics["per_class_accuracy"] == [0.5, 0.5, None]
    assert metrics["confusion_matrix"] == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert metrics["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))


def test_evaluation_uses_no_augmentation(digits):
    config = tiny(epochs=2, augment={"shift": 2, "occlusion": 0.5, "occlusion_p": 1.0, "noise": 1.0})
    result = fit(digits["X"], digits["y"], None, digits["X_val"], digits["y_val"], config, device="cpu")
    val = TensorBatches((torch.from_numpy(digits["X_val"]), torch.from_numpy(digits["y_val"])), 64, CPU)
    metrics = evaluate(result.model, val, CPU)
    assert metrics.pop("loss") == pytest.approx(result.metrics["loss"], rel=1e-6)
    assert metrics == {k: v for k, v in result.metrics.items() if k != "loss"}
    first, second = (
        predict(result.model, digits["X_val"], "cpu"),
        predict(result.model, digits["X_val"], "cpu"),
    )
    np.testing.assert_array_equal(first[1], second[1])


def test_batches_cover_every_row_once_and_fold_a_single_last_row():
    x = torch.arange(65)
    batches = TensorBatches(
        (x,), 32, CPU, shuffle=True, generator=torch.Generator().manual_seed(0), merge_single=True
    )
    sizes = [len(b[0]) for b in batches]
    assert sizes == [32, 33] and len(batches) == 2
    assert sorted(torch.cat([b[0] for b in batches]).tolist()) == list(range(65))


def test_mixed_precision_path_trains_with_a_grad_scaler():
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "in_features": 8, "n_classes": 2, "width": 8})
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0).long()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu")
    batches = TensorBatches((x, y, torch.ones(64)), 16, CPU)
    losses = [
        train_one_epoch(model, weighted_cross_entropy, optimizer, batches, CPU, scaler=scaler)["loss"]
        for _ in range(5)
    ]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_train_one_epoch_applies_the_augmentation_to_every_batch():
    model = build_model({"arch": "mlp", "in_features": 4, "n_classes": 2, "width": 4})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def augment(x):
        seen.append(x.shape[0])
        return x

    batches = TensorBatches((torch.randn(10, 4), torch.randint(0, 2, (10,))), 4, CPU)
    metrics = train_one_epoch(model, weighted_cross_entropy, optimizer, batches, CPU, augment=augment)
    assert seen == [4, 4, 2] and metrics["n"] == 10


def test_predict_and_embed_take_flat_rows(digits):
    model = build_model(tiny(in_channels=1, image_size=8))
    flat = digits["X_val"].reshape(200, 64)
    labels, probabilities = predict(model, flat, "cpu", batch_size=64)
    assert labels.shape == (200,) and probabilities.shape == (200, 10)
    np.testing.assert_array_equal(labels, probabilities.argmax(1))
    features = embed(model, flat, "cpu", batch_size=64)
    assert features.shape == (200, model.embed_dim)
    expected = model.eval().features(torch.from_numpy(digits["X_val"])).detach().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)


def test_predict_on_a_given_thread_count_gives_the_same_answer_and_restores_the_setting(digits):
    model = build_model(tiny(in_channels=1, image_size=8))
    before = torch.get_num_threads()
    one = predict(model, digits["X_val"], "cpu", num_threads=1)[1]
    assert torch.get_num_threads() == before
    np.testing.assert_allclose(one, predict(model, digits["X_val"], "cpu")[1], rtol=1e-5, atol=1e-6)


def test_exported_model_loads_back_and_predicts_the_same(digits):
    result = fit(digits["X"], digits["y"], None, None, None, tiny(epochs=1), device="cpu")
    classes = [f"digit {i}" for i in range(10)]
    data = export_model(result.best_state, result.config, classes)
    loaded = load_model(data, device="cpu")
    assert loaded.classes == classes and loaded.config["width"] == 4
    np.testing.assert_array_equal(
        predict(loaded.model, digits["X_val"])[1], predict(result.model, digits["X_val"], "cpu")[1]
    )
    with pytest.raises(ValueError, match="3 classes given for a model with n_classes=10"):
        export_model(result.best_state, result.config, classes[:3])
    with pytest.raises(ValueError, match="not an exported"):
        load_model(b"not a zip")
