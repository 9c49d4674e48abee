"""Image evolution: programs draw a 32 x 32 RGB picture that should look like a target image.

The target, ``environments/image_target.png``, ships with the project: a small
landscape (a sky gradient, a sun, two ranges of hills and a red house with a
door), 32 x 32 pixels, 8-bit RGB. It is read with a minimal PNG decoder
(numpy + zlib, no imaging library), so the environment runs anywhere numpy
does, inside the sandbox included.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from elm.environment import Environment, InvalidProgram, load_entry_point, to_jsonable
from elm.types import DescriptorSpace, Evaluation, TaskContext

__all__ = ["ImageEvolution", "read_png"]

SIZE = 32
TARGET_PATH = Path(__file__).resolve().with_name("image_target.png")
#: luminance weights (ITU-R BT.601)
LUMA = (0.299, 0.587, 0.114)
#: two 4-neighbours whose luminance differs by more than this count as an edge
EDGE_THRESHOLD = 0.05

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_png(path: str | Path) -> np.ndarray:
    """Read an 8-bit RGB or RGBA, non-interlaced PNG; returns float64 RGB in [0, 1], shape (h, w, 3).

    Supports every PNG row filter (none, sub, up, average, Paeth); an alpha
    channel is dropped. Raises ValueError naming what is unsupported.
    """
    data = Path(path).read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"{path} is not a PNG file")
    pos, header, idat = len(_PNG_SIGNATURE), None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise ValueError(f"{path} has no IHDR chunk")
    width, height, depth, color, _, _, interlace = header
    channels = {2: 3, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(
            f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs are supported "
            f"(got bit depth {depth}, colour type {color}, interlace {interlace})"
        )
    stride = width * channels
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    if raw.size != height * (stride + 1):
        raise ValueError(f"{path}: image data has {raw.size} bytes, expected {height * (stride + 1)}")
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.int64)
    prev = np.zeros(stride, dtype=np.int64)
    for r in range(height):
        kind, line = int(rows[r, 0]), rows[r, 1:].astype(np.int64)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind in (1, 3, 4):  # these depend on the reconstructed byte to the left: go byte by byte
            cur = np.zeros(stride, dtype=np.int64)
            for i in range(stride):
                left = int(cur[i - channels]) if i >= channels else 0
                up = int(prev[i])
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up) // 2
                else:
                    upleft = int(prev[i - channels]) if i >= channels else 0
                    p = left + up - upleft
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
                    pred = left if pa <= pb and pa <= pc else (up if pb <= pc else upleft)
                cur[i] = (int(line[i]) + pred) & 0xFF
        else:
            raise ValueError(f"{path}: row {r} has unknown filter type {kind}")
        out[r] = cur
        prev = cur
    return out.reshape(height, width, channels)[:, :, :3] / 255.0


def image_statistics(img: np.ndarray) -> tuple[float, float, float]:
    """(brightness, saturation, edges) of an RGB image in [0, 1], shape (h, w, 3); each in [0, 1].

    * brightness: mean luminance ``0.299 R + 0.587 G + 0.114 B``;
    * saturation: mean chroma ``max(R, G, B) - min(R, G, B)`` per pixel;
    * edges: square root of the fraction of horizontally or vertically adjacent
      pixel pairs whose luminance differs by more than :data:`EDGE_THRESHOLD`
      (the root spreads the small values pictures have: the target's 6.5 %
      of edge pairs gives 0.26, uniform noise about 0.93).
    """
    luma = LUMA[0] * img[:, :, 0] + LUMA[1] * img[:, :, 1] + LUMA[2] * img[:, :, 2]
    chroma = img.max(axis=2) - img.min(axis=2)
    steps = np.concatenate([np.abs(np.diff(luma, axis=0)).ravel(), np.abs(np.diff(luma, axis=1)).ravel()])
    return (
        min(1.0, max(0.0, _mean(luma))),
        _mean(chroma),
        math.sqrt(float(np.count_nonzero(steps > EDGE_THRESHOLD)) / steps.size),
    )


def _mean(values: np.ndarray) -> float:
    """Correctly rounded mean (``math.fsum``): the same on every machine, whatever numpy's SIMD does."""
    return math.fsum(values.ravel().tolist()) / values.size


_HELPERS = '''

def disc(img, cx, cy, r, color):
    """Paint a filled circle of radius r pixels centred at column cx, row cy."""
    rows, cols = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    img[(cols + 0.5 - cx) ** 2 + (rows + 0.5 - cy) ** 2 < r * r] = color


def box(img, left, top, right, bottom, color):
    """Paint the pixels with left <= column < right and top <= row < bottom."""
    rows, cols = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    img[(cols >= left) & (cols < right) & (rows >= top) & (rows < bottom)] = color
'''

_SEED_BANDS = '''"""Two flat bands: sky above a horizon line, ground below it."""
import numpy as np


def draw():
    img = np.zeros((32, 32, 3))
    horizon = 20  # row where the ground starts
    img[:horizon] = [0.5, 0.6, 0.8]  # sky colour (R, G, B in [0, 1])
    img[horizon:] = [0.4, 0.5, 0.3]  # ground colour
    return np.clip(img, 0.0, 1.0)
'''

_SEED_GRADIENT = '''"""A vertical sky gradient above a darker ground that fades towards the bottom."""
import numpy as np


def draw():
    rows = (np.arange(32) + 0.5) / 32  # 0 at the top, 1 at the bottom
    top = np.array([0.2, 0.3, 0.7])  # sky colour at the top
    bottom = np.array([0.7, 0.8, 0.9])  # sky colour at the horizon
    ground = np.array([0.3, 0.5, 0.3])
    horizon = 0.65  # fraction of the height where the ground starts
    sky = top + (bottom - top) * (rows[:, None] / horizon)
    land = ground * (1.2 - 0.4 * rows[:, None])
    column = np.where(rows[:, None] < horizon, sky, land)
    img = np.repeat(column[:, None, :], 32, axis=1)
    return np.clip(img, 0.0, 1.0)
'''

_SEED_SHAPES = '''"""A few shapes on a plain background: a disc, a box and a strip of ground."""
import numpy as np


def draw():
    img = np.zeros((32, 32, 3))
    img[:, :] = [0.6, 0.7, 0.9]  # background
    disc(img, 8.0, 8.0, 5.0, [0.9, 0.9, 0.5])
    box(img, 18, 14, 28, 24, [0.6, 0.4, 0.3])
    box(img, 0, 26, 32, 32, [0.3, 0.6, 0.3])
    return np.clip(img, 0.0, 1.0)
''' + _HELPERS

_SEED_WAVES = '''"""Colour waves: each channel a sum of sines over rows and columns."""
import numpy as np


def draw():
    rows, cols = np.mgrid[0:32, 0:32] / 32.0
    red = 0.5 + 0.3 * np.sin(3.0 * rows + 1.0) * np.cos(2.0 * cols)
    green = 0.5 + 0.3 * np.sin(4.0 * rows - 0.5) + 0.1 * np.cos(5.0 * cols)
    blue = 0.6 - 0.3 * rows + 0.1 * np.sin(6.0 * cols)
    img = np.stack([red, green, blue], axis=-1)
    return np.clip(img, 0.0, 1.0)
'''

_SEEDS = (_SEED_BANDS, _SEED_GRADIENT, _SEED_SHAPES, _SEED_WAVES)


class ImageEvolution(Environment):
    """Draw a 32 x 32 RGB image as close as possible to the shipped target image.

    A program defines ``draw()`` returning an array-like of shape
    (32, 32, 3): rows top to bottom, columns left to right, channels R, G, B,
    every value a finite number in [0, 1].

    Fitness: ``1 - RMSE`` between the image and the target over all pixels
    and channels, in [0, 1]; 1 is a perfect copy. (OpenELM's version used the
    L1 distance on 0-255 values; RMSE on [0, 1] keeps fitness non-negative so
    the QD score needs no offset.)

    Descriptors (bounds inclusive, each in [0, 1], default grid 8 x 8 x 8),
    see :func:`image_statistics`: ``brightness`` (mean luminance),
    ``saturation`` (mean chroma) and ``edges`` (edge density). The target
    sits at about (0.53, 0.45, 0.25).

    Scoring uses only correctly rounded operations and ``math.fsum``, so it
    gives bit-identical results on every machine.
    """

    name: ClassVar[str] = "image_evolution"
    entry_point: ClassVar[str] = "draw"

    def __init__(self) -> None:
        target = read_png(TARGET_PATH)
        if target.shape != (SIZE, SIZE, 3):
            raise ValueError(f"{TARGET_PATH} must be {SIZE} x {SIZE} RGB, got shape {target.shape}")
        target.flags.writeable = False
        self._target = target

    def __repr__(self) -> str:
        return "ImageEvolution()"

    @property
    def target(self) -> np.ndarray:
        """The target image (read-only), float64 in [0, 1], shape (32, 32, 3)."""
        return self._target

    @property
    def descriptor_space(self) -> DescriptorSpace:
        return DescriptorSpace(
            names=("brightness", "saturation", "edges"),
            lower=(0.0, 0.0, 0.0),
            upper=(1.0, 1.0, 1.0),
            bins=(8, 8, 8),
        )

    def seed_programs(self) -> Sequence[str]:
        """Four drawings: two flat bands, a gradient, simple shapes, colour waves."""
        return list(_SEEDS)

    def task(self) -> TaskContext:
        return TaskContext(
            name=self.name,
            entry_point=self.entry_point,
            signature="def draw() -> np.ndarray:",
            description=(
                "Write a Python function `draw()` that takes no arguments and returns a 32 x 32 RGB image "
                "as a numpy array of shape (32, 32, 3): rows top to bottom, columns left to right, channels "
                "red, green, blue, every value a float in [0, 1]. The image is compared with a hidden "
                "target picture, a small landscape: a blue sky that is darker at the top, a yellow sun in "
                "the upper right, blue-green hills behind green grass at the bottom, and a red house with "
                "a dark brown roof and door on the left. The score is 1 - RMSE between your image and the "
                "target (1 = identical). Use numpy and the standard library; be deterministic."
            ),
            api_doc=(
                "import numpy as np\n\n"
                "def draw() -> np.ndarray:\n"
                '    """Return the image: shape (32, 32, 3), floats in [0, 1]."""\n'
            ),
        )

    def execute(self, source: str) -> Any:
        """Call ``draw()`` and return the image as nested lists (checked in :meth:`score`)."""
        img = load_entry_point(source, self.entry_point)()
        if isinstance(img, np.ndarray) and img.shape != (SIZE, SIZE, 3):
            raise InvalidProgram(f"draw() must return an array of shape ({SIZE}, {SIZE}, 3), got shape {img.shape}")
        return to_jsonable(img)

    def score(self, output: Any) -> Evaluation:
        """Check the image (shape, numbers, range) and score its similarity to the target."""
        img = self._parse(output)
        diff = img - self.target
        rmse = math.sqrt(_mean(diff * diff))
        brightness, saturation, edges = image_statistics(img)
        return Evaluation(
            fitness=1.0 - rmse,
            descriptor=(brightness, saturation, edges),
            info={"rmse": rmse, "max_abs_error": float(np.abs(diff).max())},
        )

    @staticmethod
    def _parse(output: Any) -> np.ndarray:
        """The image as float64 (32, 32, 3); InvalidProgram naming the first problem otherwise."""
        shape_error = f"draw() must return an array of shape ({SIZE}, {SIZE}, 3)"
        if not isinstance(output, list):
            raise InvalidProgram(f"{shape_error}, got {type(output).__name__}")
        try:
            cells = np.array(output, dtype=object)
        except ValueError:  # ragged nesting
            raise InvalidProgram(f"{shape_error}, got ragged nested lists") from None
        if cells.shape != (SIZE, SIZE, 3):
            raise InvalidProgram(f"{shape_error}, got shape {cells.shape}")
        flat = cells.ravel()
        kinds = {type(v) for v in flat}
        if not kinds <= {int, float}:
            bad = next(v for v in flat if type(v) not in (int, float))
            marker = isinstance(bad, str) and bad in ("nan", "inf", "-inf")
            raise InvalidProgram(
                f"every pixel value must be a finite number in [0, 1], found {bad!r}"
                + (" (NaN or infinity)" if marker else f" ({type(bad).__name__})")
            )
        img = flat.astype(np.float64).reshape(SIZE, SIZE, 3)
        outside = np.argwhere(~((img >= 0.0) & (img <= 1.0)))
        if outside.size:
            r, c, ch = (int(v) for v in outside[0])
            raise InvalidProgram(
                f"pixel values must lie in [0, 1]; image[{r}, {c}, {ch}] = {float(img[r, c, ch])!r} "
                f"({len(outside)} value(s) outside; np.clip(img, 0, 1) before returning)"
            )
        return img
