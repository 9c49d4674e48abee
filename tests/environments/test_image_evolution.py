"""ImageEvolution: shipped target, PNG reader, strict image checks, fitness and statistics."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from elm import InvalidProgram
from environments import ImageEvolution
from environments.image_evolution import TARGET_PATH, image_statistics, read_png


@pytest.fixture(scope="module")
def env() -> ImageEvolution:
    return ImageEvolution()


def _png(pixels: np.ndarray, filters: list[int]) -> bytes:
    """Encode uint8 RGB(A) ``pixels`` with the given PNG filter type per row (the inverse of read_png)."""
    h, w, c = pixels.shape
    raw = b""
    prev = np.zeros(w * c, dtype=np.int64)
    for r in range(h):
        line = pixels[r].reshape(-1).astype(np.int64)
        left = np.concatenate([np.zeros(c, np.int64), line[:-c]])
        upleft = np.concatenate([np.zeros(c, np.int64), prev[:-c]])
        kind = filters[r]
        if kind == 0:
            pred = np.zeros_like(line)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        raw += bytes([kind]) + ((line - pred) & 0xFF).astype(np.uint8).tobytes()
        prev = line

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, {3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [3, 4])
def test_png_reader_undoes_every_row_filter(tmp_path, channels):
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, size=(10, 7, channels), dtype=np.uint8)
    path = tmp_path / "img.png"
    path.write_bytes(_png(pixels, [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]))
    assert np.array_equal(read_png(path), pixels[:, :, :3] / 255.0)


def test_png_reader_names_what_it_cannot_read(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"GIF89a")
    with pytest.raises(ValueError, match="not a PNG"):
        read_png(path)
    data = bytearray(_png(np.zeros((2, 2, 3), np.uint8), [0, 0]))
    data[24] = 16  # bit depth
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="only 8-bit RGB/RGBA"):
        read_png(path)


def test_target_ships_with_the_package(env):
    assert TARGET_PATH.is_file() and TARGET_PATH.parent.name == "environments"
    assert env.target.shape == (32, 32, 3) and 0.0 <= env.target.min() and env.target.max() <= 1.0
    assert len(np.unique(env.target.reshape(-1, 3), axis=0)) >= 10  # a picture, not a flat colour
    with pytest.raises(ValueError):
        env.target[0, 0, 0] = 0.5  # read-only


def test_fitness_is_one_minus_rmse(env):
    assert env.score(env.target.tolist()).fitness == 1.0
    grey = np.full((32, 32, 3), 0.5)
    expected = 1.0 - float(np.sqrt(np.mean((grey - env.target) ** 2)))
    assert env.score(grey.tolist()).fitness == pytest.approx(expected, abs=1e-15)
    black, white = np.zeros((32, 32, 3)).tolist(), np.ones((32, 32, 3)).tolist()
    assert 0.0 <= env.score(black).fitness < env.score(grey.tolist()).fitness
    assert 0.0 <= env.score(white).fitness < 1.0


def test_image_statistics_on_known_images():
    black = np.zeros((32, 32, 3))
    assert image_statistics(black) == (0.0, 0.0, 0.0)
    assert image_statistics(np.ones((32, 32, 3))) == pytest.approx((1.0, 0.0, 0.0))
    red = np.zeros((32, 32, 3))
    red[..., 0] = 1.0
    assert image_statistics(red) == pytest.approx((0.299, 1.0, 0.0))
    checker = np.indices((32, 32)).sum(axis=0) % 2
    assert image_statistics(np.repeat(checker[:, :, None], 3, axis=2).astype(float))[2] == 1.0
    half = np.zeros((32, 32, 3))
    half[16:] = 1.0  # one horizontal edge: 32 of the 1984 neighbour pairs
    assert image_statistics(half)[2] == pytest.approx(np.sqrt(32 / 1984))


def test_seeds_are_valid_imperfect_and_in_distinct_cells(env):
    seeds = env.seed_programs()
    assert len(seeds) == 4 and len(set(seeds)) == 4
    space = env.descriptor_space
    cells = set()
    for source in seeds:
        ev = env.evaluate_local(source)
        assert 0.5 < ev.fitness < 0.9
        cells.add(tuple(min(b - 1, int((v - lo) / (hi - lo) * b))
                        for v, lo, hi, b in zip(ev.descriptor, space.lower, space.upper, space.bins)))
    assert len(cells) == 4


def test_a_program_drawing_the_landscape_scores_higher_than_the_seeds(env):
    source = '''
import numpy as np

def draw():
    rows, cols = np.mgrid[0:32, 0:32] + 0.5
    img = np.zeros((32, 32, 3))
    t = rows / 32
    img[...] = np.stack([0.25 + 0.55 * t, 0.45 + 0.45 * t, 0.85 + 0.1 * t], -1)
    img[(cols - 24) ** 2 + (rows - 7) ** 2 < 20] = [1.0, 0.85, 0.2]
    img[rows > 20] = [0.3, 0.6, 0.3]
    img[(cols > 6) & (cols < 14) & (rows > 17) & (rows < 25)] = [0.8, 0.25, 0.2]
    return img
'''
    best_seed = max(env.evaluate_local(s).fitness for s in env.seed_programs())
    assert env.evaluate_local(source).fitness > best_seed + 0.05


def _image(change):
    img = np.full((32, 32, 3), 0.5).tolist()
    change(img)
    return img


def _set(value):
    def change(img):
        img[3][4][1] = value
    return change


IMAGE_TABLE = [
    ("valid", lambda img: None, None),
    ("ints 0 and 1 are fine", _set(1), None),
    ("above 1", _set(1.0001), r"image\[3, 4, 1\] = 1.0001"),
    ("negative", _set(-0.1), "outside"),
    ("nan marker", _set("nan"), "NaN or infinity"),
    ("inf marker", _set("inf"), "NaN or infinity"),
    ("string", _set("0.5"), "found '0.5'"),
    ("bool", _set(True), "bool"),
    ("None", _set(None), "NoneType"),
    ("row too long", lambda img: img[0].append([0.5, 0.5, 0.5]), "ragged|shape"),
    ("missing row", lambda img: img.pop(), r"shape \(31, 32, 3\)"),
    ("two channels", lambda img: [px.pop() for row in img for px in row], r"shape \(32, 32, 2\)"),
]


@pytest.mark.parametrize("case,change,reason", IMAGE_TABLE, ids=[row[0] for row in IMAGE_TABLE])
def test_image_table(env, case, change, reason):
    img = _image(change)
    if reason is None:
        assert 0.0 <= env.score(img).fitness <= 1.0
    else:
        with pytest.raises(InvalidProgram, match=reason):
            env.score(img)


def test_execute_rejects_wrongly_shaped_arrays_before_serialising(env):
    with pytest.raises(InvalidProgram, match=r"shape \(64, 64, 3\)"):
        env.execute("import numpy as np\ndef draw():\n    return np.zeros((64, 64, 3))\n")
    with pytest.raises(InvalidProgram, match="got int"):
        env.score(3)


def test_task_describes_the_target_without_giving_it_away(env):
    task = env.task()
    assert task.entry_point == "draw" and "(32, 32, 3)" in task.description
    assert "house" in task.description and "sun" in task.description
