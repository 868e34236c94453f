import pytest
import torch

from ml.augment import Augment


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=64, channels=1, size=8):
    return torch.rand(n, channels, size, size, generator=generator(123)) + 0.1


def test_default_config_is_the_identity():
    augment = Augment.from_config(None)
    x = images()
    assert not augment.active
    torch.testing.assert_close(augment(x, generator()), x)


def test_hflip_off_leaves_the_batch_unflipped():
    x = images()
    out = Augment.from_config({"hflip": False})(x, generator())
    torch.testing.assert_close(out, x)


def test_hflip_on_mirrors_some_images_and_leaves_the_others():
    x = images(n=200)
    out = Augment.from_config({"hflip": True})(x, generator())
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    kept = (out == x).flatten(1).all(1)
    assert bool((flipped | kept).all())
    assert 50 < int(flipped.sum()) < 150


@pytest.mark.parametrize("channels, size, max_area", [(1, 8, 0.25), (3, 64, 0.25), (1, 8, 0.1), (3, 32, 0.5)])
def test_occlusion_zeros_one_rectangle_within_the_area_bound(channels, size, max_area):
    x = torch.ones(300, channels, size, size)
    out = Augment.from_config({"occlusion": max_area, "occlusion_p": 1.0})(x, generator())
    zeros = out == 0
    assert bool((zeros == zeros[:, :1]).all()), "every channel is erased at the same place"
    zeros = zeros[:, 0]
    area = zeros.flatten(1).sum(1)
    assert int(area.min()) >= 1
    assert int(area.max()) <= max_area * size * size
    rows, cols = zeros.any(2).sum(1), zeros.any(1).sum(1)
    assert torch.equal(rows * cols, area), "the erased pixels form a rectangle"
    assert len(set(area.tolist())) > 3, "patch sizes vary"


def test_occlusion_probability_leaves_some_images_whole():
    x = torch.ones(400, 1, 8, 8)
    out = Augment.from_config({"occlusion": 0.25, "occlusion_p": 0.5})(x, generator())
    whole = (out == 1).flatten(1).all(1)
    assert 120 < int(whole.sum()) < 280


def test_occlusion_that_could_hide_most_of_the_image_is_refused():
    with pytest.raises(ValueError, match="occlusion"):
        Augment.from_config({"occlusion": 0.6})


def test_shift_moves_content_by_at_most_shift_pixels():
    x = torch.zeros(300, 1, 8, 8)
    x[:, 0, 4, 3] = 1.0
    out = Augment.from_config({"shift": 1})(x, generator())
    assert torch.equal(out.flatten(1).sum(1), torch.ones(300)), "content inside the border is kept"
    position = out.flatten(1).argmax(1)
    dy, dx = position // 8 - 4, position % 8 - 3
    assert int(dy.abs().max()) <= 1 and int(dx.abs().max()) <= 1
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) == 9, "all nine offsets occur"


def test_shift_moves_every_channel_together():
    x = images(n=50, channels=3)
    out = Augment.from_config({"shift": 2})(x, generator())
    for image_in, image_out in zip(x, out, strict=True):
        found = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(_shifted(image_in, dy, dx), image_out)
        ]
        assert len(found) == 1


def _shifted(image, dy, dx):
    out = torch.zeros_like(image)
    h, w = image.shape[1:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        :, max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def test_noise_adds_gaussian_noise_of_the_given_scale():
    x = torch.zeros(100, 32)
    out = Augment.from_config({"noise": 0.5})(x, generator())
    assert abs(float(out.mean())) < 0.02
    assert float(out.std()) == pytest.approx(0.5, rel=0.05)


def test_augmentation_is_reproducible_from_the_generator_and_leaves_the_input_alone():
    augment = Augment.from_config({"hflip": True, "shift": 1, "occlusion": 0.25, "noise": 0.1})
    x = images()
    before = x.clone()
    first, second = augment(x, generator(7)), augment(x, generator(7))
    torch.testing.assert_close(first, second)
    torch.testing.assert_close(x, before)
    assert not torch.equal(first, augment(x, generator(8)))


def test_spatial_augmentation_of_feature_vectors_is_refused():
    with pytest.raises(ValueError, match="images"):
        Augment.from_config({"shift": 1})(torch.zeros(4, 10), generator())


@pytest.mark.parametrize(
    "config, message",
    [
        ({"flip": True}, "unknown augment key"),
        ({"shift": -1}, "shift"),
        ({"noise": -0.1}, "noise"),
        ({"hflip": 1}, "hflip"),
    ],
)
def test_bad_augment_config_raises(config, message):
    with pytest.raises(ValueError, match=message):
        Augment.from_config(config)
