"""Data sets for training: digits, mnist-5k, the generated glyphs and ImageFolder folders, ChamNet's held-out split, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from optimizer.training import datasets
from optimizer.training.datasets import HELD_OUT_PER_CLASS, ImageDataset, InvalidDataset, held_out_split, load_dataset
from optimizer.training.settings import DatasetMismatch, check_dataset_fits

from conftest import one_line_error


def write_image_folder(root: Path, per_class: dict[str, int], size: tuple[int, int] = (12, 8)) -> Path:
    """Small PNGs, one colour per class (so a class is recognisable after loading), with noise."""
    rng = np.random.default_rng(0)
    for index, (name, count) in enumerate(per_class.items()):
        folder = root / name
        folder.mkdir(parents=True)
        base = np.array([60 + 90 * index, 200 - 60 * index, 120], dtype=np.int16)
        for i in range(count):
            pixels = np.clip(base + rng.integers(-20, 20, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img{i:03d}.png")
    return root


def run_optimize(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


def test_digits_split_is_chamnets_and_fixed() -> None:
    data = load_dataset("digits")
    assert data.images.shape == (1797, 3, 8, 8) and data.images.dtype == np.float32
    assert data.n_classes == 10 and data.classes == tuple("0123456789")
    train, held = data.train_index, data.held_out_index
    assert len(held) == 10 * HELD_OUT_PER_CLASS and len(train) == 1797 - 500
    assert np.bincount(data.labels[held], minlength=10).tolist() == [50] * 10
    assert not set(train) & set(held) and len(set(train) | set(held)) == 1797
    # grey repeated over 3 channels, normalised by the training split
    assert np.array_equal(data.images[:, 0], data.images[:, 2])
    assert np.allclose(data.images[train].mean(axis=(0, 2, 3)), 0, atol=1e-4)
    assert np.allclose(data.images[train].std(axis=(0, 2, 3)), 1, atol=1e-3)
    # the same split and id every time, the cache aside
    datasets._CACHE.clear()
    again = load_dataset("digits")
    assert again is not data and again.dataset_id == data.dataset_id and data.dataset_id.startswith("digits-")
    assert np.array_equal(again.held_out_index, held)
    assert load_dataset("digits") is again  # loaded once per process


def test_split_is_stratified_and_seeded_whatever_the_order() -> None:
    labels = np.repeat(np.arange(3), [60, 51, 80])
    train, held = held_out_split(labels, ("a", "b", "c"))
    assert np.bincount(labels[held]).tolist() == [50, 50, 50] and len(train) == 10 + 1 + 30
    assert np.array_equal(held_out_split(labels, ("a", "b", "c"))[1], held)
    with pytest.raises(InvalidDataset, match=r"more than 50 images.*'b' has 50"):
        held_out_split(np.repeat(np.arange(2), [60, 50]), ("a", "b"), source="folder")


def test_image_folder(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "shapes", {"light": 52, "dark": 55})
    (root / "dark" / "notes.txt").write_text("not an image")
    data = load_dataset(root, image_size=16)
    assert data.classes == ("dark", "light")  # sorted names give the indices
    assert data.images.shape == (107, 3, 16, 16) and data.images.dtype == np.float32
    assert np.bincount(data.labels).tolist() == [55, 52]
    assert np.bincount(data.labels[data.held_out_index]).tolist() == [50, 50]
    assert data.dataset_id.startswith("shapes-") and data.name == "shapes"
    # RGB kept: "light" was written with less red and more green than "dark"
    mean = data.images.mean(axis=(2, 3))
    assert mean[data.labels == 1, 0].mean() < mean[data.labels == 0, 0].mean()
    assert mean[data.labels == 1, 1].mean() > mean[data.labels == 0, 1].mean()
    assert load_dataset(root, image_size=16) is data  # same listing: the cached arrays
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "light" / "extra.png")
    changed = load_dataset(root, image_size=16)
    assert changed.dataset_id != data.dataset_id and len(changed.labels) == 108
    assert load_dataset(root, image_size=8).dataset_id != changed.dataset_id  # the size is part of the id


def test_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(InvalidDataset, match="no such data set folder"):
        load_dataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidDataset, match="no class sub-folders"):
        load_dataset(tmp_path / "empty")
    root = write_image_folder(tmp_path / "broken", {"a": 51, "b": 51}, size=(4, 4))
    (root / "a" / "img000.png").write_bytes(b"not a png")
    with pytest.raises(InvalidDataset, match=r"img000.png: not an image"):
        load_dataset(root)


def test_more_classes_than_outputs_is_refused() -> None:
    labels = np.repeat(np.arange(11), 51)
    train, held = held_out_split(labels, tuple(map(str, range(11))))
    data = ImageDataset("eleven", "eleven-0", tuple(map(str, range(11))), np.zeros((len(labels), 3, 8, 8), np.float32),
                        labels, train, held)
    with pytest.raises(DatasetMismatch, match="11 classes, but chamnet-mobile-mini's networks have 10 outputs"):
        check_dataset_fits("chamnet-mobile-mini", data)
    check_dataset_fits("chamnet-mobile", data)  # 1000 outputs: the labels are the first 11


@pytest.mark.slow
def test_bad_data_is_one_line_on_the_command_line(tmp_path: Path) -> None:
    base = ["build-predictor", "--space", "chamnet-mobile-mini", "--out", str(tmp_path / "p.json"), "--budget", "4",
            "--initial", "2", "--epochs", "1"]
    line = one_line_error(run_optimize(*base, "--data", str(tmp_path / "nowhere")))
    assert "nowhere: no such data set folder" in line
    short = write_image_folder(tmp_path / "short", {"cats": 60, "dogs": 12}, size=(4, 4))
    line = one_line_error(run_optimize(*base, "--data", str(short)))
    assert "'dogs' has 12" in line and "50 are held out" in line
    assert not (tmp_path / "p.json").exists()


def test_mnist_5k_is_mlxtends_mnist_split_as_chamnet_does() -> None:
    data = load_dataset("mnist-5k")
    assert data.images.shape == (5000, 3, 28, 28) and data.n_classes == 10
    assert len(data.held_out_index) == 500 and len(data.train_index) == 4500
    assert np.bincount(data.labels, minlength=10).min() > 400  # about 500 of every digit
    assert data.dataset_id.startswith("mnist-5k-") and data.describe()["image_size"] == 28
    check_dataset_fits("chamnet-mobile-mini", data)


def test_glyphs_are_generated_the_same_every_time() -> None:
    from optimizer.training.glyphs import CLASSES, SIZE, render_glyphs

    images, labels = render_glyphs(3)
    again, again_labels = render_glyphs(5)
    assert images.shape == (30, SIZE, SIZE) and images.dtype == np.float32
    assert np.array_equal(images, again[:30]) and np.array_equal(labels, again_labels[:30])  # more keeps the first
    assert np.bincount(again_labels, minlength=len(CLASSES)).tolist() == [5] * 10
    assert images.min() >= 0 and images.max() <= 1
    assert (images.reshape(30, -1).std(axis=1) > 0.05).all()  # every image holds a glyph, not a blank
    assert not np.array_equal(render_glyphs(3, seed=1)[0], images)


def test_glyphs_hold_out_200_per_class_and_are_learnable_but_not_linearly() -> None:
    from sklearn.linear_model import LogisticRegression

    data = load_dataset("glyphs")
    assert data.images.shape == (8000, 3, 32, 32) and data.n_classes == 10
    assert np.bincount(data.labels[data.held_out_index]).tolist() == [200] * 10
    assert data.dataset_id.startswith("glyphs-") and load_dataset("glyphs", held_out_per_class=50).dataset_id == data.dataset_id
    # Harder than digits, on purpose: a linear model on the pixels is far from a CNN's 0.79-0.88, far above chance.
    train = data.train_index[:3000]
    flat = data.images[:, 0].reshape(len(data.images), -1)
    model = LogisticRegression(max_iter=300, C=0.01).fit(flat[train], data.labels[train])
    accuracy = model.score(flat[data.held_out_index], data.labels[data.held_out_index])
    assert 0.15 < accuracy < 0.6, accuracy  # 0.28 here (chance: 0.1)
