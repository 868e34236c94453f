import pytest
import torch

from ml.nets import MLPClassifier, SmallCNN, build_model, load_backbone, model_config


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cnn_config(**overrides):
    return {"arch": "cnn", "in_channels": 1, "image_size": 8, "n_classes": 10, "width": 4, **overrides}


@pytest.mark.parametrize(
    "in_channels, image_size, input_shape",
    [(1, 8, (1, 8, 8)), (3, 64, (3, 64, 64)), (3, [12, 20], (3, 12, 20)), (1, 3, (1, 3, 3))],
)
def test_cnn_takes_its_input_size_from_the_config(in_channels, image_size, input_shape):
    model = build_model(cnn_config(in_channels=in_channels, image_size=image_size, n_classes=5))
    x = torch.randn(2, *input_shape)
    assert model(x).shape == (2, 5)
    assert model.features(x).shape == (2, model.embed_dim)
    assert model.input_shape == input_shape


def test_cnn_gets_deeper_for_larger_images():
    small = build_model(cnn_config(image_size=8))
    large = build_model(cnn_config(image_size=64))
    count = lambda m: sum(isinstance(layer, torch.nn.MaxPool2d) for layer in m.modules())  # noqa: E731
    assert count(small) == 1
    assert count(large) == 4


def test_mlp_head_over_fixed_features():
    model = build_model({"arch": "mlp", "in_features": 16, "n_classes": 3, "width": 8})
    assert isinstance(model, MLPClassifier)
    x = torch.randn(4, 16)
    assert model(x).shape == (4, 3)
    assert model.features(x).shape == (4, 8)


def test_forward_is_head_over_features():
    model = build_model(cnn_config()).eval()
    x = torch.randn(3, 1, 8, 8)
    torch.testing.assert_close(model(x), model.head(model.features(x)))


def test_model_config_fills_defaults_and_ignores_training_keys():
    cfg = model_config({"arch": "cnn", "in_channels": 1, "image_size": 8, "n_classes": 2, "epochs": 3})
    assert cfg == {
        "arch": "cnn",
        "n_classes": 2,
        "width": 32,
        "dropout": 0.1,
        "in_channels": 1,
        "image_size": 8,
    }


@pytest.mark.parametrize(
    "config, message",
    [
        (cnn_config(arch="resnet"), "unknown arch 'resnet'"),
        (cnn_config(n_classes=1), "n_classes must be an int >= 2"),
        ({"arch": "cnn", "in_channels": 1, "n_classes": 3}, "needs config\\['image_size'\\]"),
        ({"arch": "mlp", "n_classes": 3}, "in_features"),
        (cnn_config(width=0), "width"),
        (cnn_config(dropout=1.0), "dropout"),
        (cnn_config(image_size=[8]), "image_size"),
    ],
)
def test_bad_model_config_raises_a_clear_error(config, message):
    with pytest.raises(ValueError, match=message):
        build_model(config)


def test_standardize_keeps_constant_channels_at_unit_scale():
    model = build_model({"arch": "mlp", "in_features": 3, "n_classes": 2})
    x = torch.tensor([[0.0, 1.0, 5.0], [0.0, 3.0, 5.0]])
    model.standardize.set_statistics(x)
    assert model.standardize.std.tolist() == [1.0, pytest.approx(2**0.5), 1.0]
    assert model.standardize(torch.tensor([[7.0, 2.0, 5.0]]))[0, 0] == 7.0


def test_load_backbone_copies_backbone_and_keeps_a_new_head_for_another_class_count():
    source = build_model(cnn_config(n_classes=10))
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
        source.standardize.mean.fill_(0.5)
    target = build_model(cnn_config(n_classes=3))
    fresh_head = {k: v.clone() for k, v in target.head.state_dict().items()}

    assert load_backbone(target, source.state_dict()) is False

    for key, value in source.state_dict().items():
        if key.startswith("backbone."):
            torch.testing.assert_close(target.state_dict()[key], value)
    assert target.head.out_features == 3
    torch.testing.assert_close(target.head.state_dict(), fresh_head)


def test_load_backbone_copies_the_head_when_the_class_count_matches():
    source = build_model(cnn_config())
    target = build_model(cnn_config())
    assert load_backbone(target, {"best_state": source.state_dict()}) is True
    torch.testing.assert_close(target.state_dict(), source.state_dict())


@pytest.mark.parametrize(
    "other",
    [cnn_config(width=8), cnn_config(image_size=16), {"arch": "mlp", "in_features": 64, "n_classes": 10}],
)
def test_load_backbone_refuses_another_architecture(other):
    with pytest.raises(ValueError, match="init_state"):
        load_backbone(build_model(cnn_config()), build_model(other).state_dict())


def test_frozen_backbone_stays_in_eval_mode_and_without_gradients():
    model = SmallCNN(1, 8, 10, width=4).freeze_backbone()
    model.train()
    assert model.training and model.head.training
    assert not any(m.training for m in model.backbone.modules())
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
