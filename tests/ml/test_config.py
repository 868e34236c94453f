"""Checking a training config needs no PyTorch: a web request that validates one before
queueing a run must not pay for loading it."""
import subprocess
import sys
from pathlib import Path

import pytest

from ml.config import resolve_config

ROOT = Path(__file__).resolve().parents[2]


def test_a_config_is_checked_without_loading_pytorch():
    script = (
        "import sys\n"
        "from ml.config import resolve_config\n"
        "cfg = resolve_config({'arch': 'cnn', 'n_classes': 3, 'in_channels': 1, 'image_size': 8,"
        " 'augment': {'shift': 1}})\n"
        "assert cfg['augment']['shift'] == 1 and cfg['epochs'] == 30, cfg\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "config, match",
    [
        ({"arch": "mlp", "n_classes": 2, "in_features": 4, "augment": {"shift": 1}}, "only the 'noise'"),
        ({"arch": "cnn", "n_classes": 2, "in_channels": 1, "image_size": 8, "augment": {"spin": 1}}, "unknown augment"),
        ({"arch": "cnn", "n_classes": 2, "in_channels": 1, "image_size": 8, "lr_schedule": "step"}, "lr_schedule"),
    ],
)
def test_a_bad_config_is_refused_with_the_key_named(config, match):
    with pytest.raises(ValueError, match=match):
        resolve_config(config)


def test_the_training_modules_use_the_same_checks():
    from ml import augment, nets, training

    assert training.resolve_config is resolve_config and nets.model_config.__module__ == "ml.config"
    assert augment.Augment.from_config({"noise": 0.1}).noise == 0.1
    with pytest.raises(ValueError, match="occlusion"):
        augment.Augment(occlusion=0.9)
