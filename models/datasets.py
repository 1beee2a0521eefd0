"""Datasets for the gradient-explainability service.

Four small, fully deterministic datasets are provided:

* ``shapes`` -- generated 64x64 RGB images of one of four shapes
  (circle, square, triangle, star) on cluttered backgrounds, with a
  per-pixel boolean object mask (useful to score saliency maps).
* ``digits`` -- scikit-learn's 8x8 handwritten digits.
* ``breast_cancer`` -- scikit-learn's Wisconsin breast-cancer table
  (30 standardised features, binary classification).
* ``friedman1`` -- scikit-learn's Friedman #1 regression problem.

Everything is derived from explicit ``np.random.Generator`` instances seeded
from ``(seed, dataset, split)``, so the same seed always yields byte-identical
arrays, and the ``shapes`` test split can be generated without generating the
training split. No pickle is used anywhere.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from PIL import Image, ImageDraw

Kind = Literal["classification", "regression"]
SplitName = Literal["train", "val", "test"]

DATASETS: tuple[str, ...] = ("shapes", "digits", "breast_cancer", "friedman1")
SPLITS: tuple[str, ...] = get_args(SplitName)


# --------------------------------------------------------------------------
# Split container and hashing
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """One split of a dataset.

    Attributes:
        x: ``(N, *input_shape)`` float32 inputs.
        y: ``(N,)`` int32 class labels (classification) or float32 targets
            (regression).
        mask: ``(N, H, W)`` bool object mask, or ``None`` when the dataset has
            no notion of an object (everything except ``shapes``).
    """

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != np.float32:
            raise TypeError(f"Split.x must be float32, got {self.x.dtype}")
        if self.y.ndim != 1:
            raise ValueError(f"Split.y must have shape (N,), got {self.y.shape}")
        if self.y.dtype not in (np.int32, np.float32):
            raise TypeError(f"Split.y must be int32 or float32, got {self.y.dtype}")
        if len(self.x) != len(self.y):
            raise ValueError(f"Split.x and Split.y must have the same length N, got {len(self.x)} and {len(self.y)}")
        if self.mask is not None:
            if self.mask.dtype != np.bool_ or self.mask.ndim != 3:
                raise ValueError(f"Split.mask must be a (N, H, W) bool array, got {self.mask.shape} {self.mask.dtype}")
            if self.mask.shape[0] != len(self.x) or self.mask.shape[1:] != self.x.shape[1:3]:
                raise ValueError(
                    f"Split.mask must have shape (N, H, W) = {(len(self.x), *self.x.shape[1:3])}, got {self.mask.shape}"
                )

    def __len__(self) -> int:
        return int(self.y.shape[0])


def _hash_array(h: hashlib._Hash, label: str, arr: np.ndarray | None) -> None:
    """Feed ``label``, dtype, shape and little-endian C-order bytes into ``h``."""
    if arr is None:
        h.update(f"{label}:none;".encode())
        return
    a = np.ascontiguousarray(arr)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    h.update(f"{label}:{a.dtype.str}:{a.shape};".encode())
    h.update(a.tobytes())


def split_hash(split: Split) -> str:
    """SHA-256 hex digest of a split's ``x``, ``y`` and ``mask`` arrays.

    The digest covers dtypes, shapes and little-endian bytes, so it is stable
    across runs and machines for identical data.
    """
    h = hashlib.sha256()
    _hash_array(h, "x", split.x)
    _hash_array(h, "y", split.y)
    _hash_array(h, "mask", split.mask)
    return h.hexdigest()


def _frozen(*arrays: np.ndarray | None) -> None:
    """Mark arrays read-only: datasets are cached and shared between callers."""
    for a in arrays:
        if a is not None:
            a.setflags(write=False)


def _make_split(x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> Split:
    x = np.ascontiguousarray(x)
    y = np.ascontiguousarray(y)
    mask = None if mask is None else np.ascontiguousarray(mask)
    _frozen(x, y, mask)
    return Split(x=x, y=y, mask=mask)


# --------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------


class Dataset:
    """A named dataset with lazily generated, cached train/val/test splits.

    Metadata is exposed through read-only properties; the splits are
    ``functools.cached_property`` attributes built on first access by a
    per-split factory, so loading only ``.test`` never builds ``.train``.
    """

    def __init__(
        self,
        *,
        name: str,
        kind: Kind,
        input_shape: tuple[int, ...],
        value_range: tuple[float, float] | None,
        class_names: tuple[str, ...] | None,
        feature_names: tuple[str, ...] | None,
        preprocessing: dict,
        seed: int,
        make_split: Callable[[str], Split],
    ) -> None:
        self._name = name
        self._kind = kind
        self._input_shape = tuple(input_shape)
        self._value_range = value_range
        self._class_names = class_names
        self._feature_names = feature_names
        self._preprocessing = preprocessing
        self._seed = seed
        self._make_split_fn = make_split

    name = property(lambda self: self._name, doc="Dataset name (one of DATASETS).")
    kind = property(lambda self: self._kind, doc="'classification' or 'regression'.")
    input_shape = property(lambda self: self._input_shape, doc="Per-sample input shape.")
    value_range = property(
        lambda self: self._value_range,
        doc="Declared (min, max) input range; None for standardised tabular data.",
    )
    class_names = property(lambda self: self._class_names, doc="Class names or None.")
    feature_names = property(lambda self: self._feature_names, doc="Tabular feature names or None.")
    seed = property(lambda self: self._seed, doc="Seed the dataset was built from.")

    @property
    def preprocessing(self) -> dict:
        """JSON-serialisable statistics used for preprocessing (a fresh copy)."""
        return _json_copy(self._preprocessing)

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or None for regression."""
        return None if self._class_names is None else len(self._class_names)

    def _build(self, name: str) -> Split:
        split = self._make_split_fn(name)
        if split.x.shape[1:] != self._input_shape:
            raise AssertionError(
                f"{self._name}/{name}: expected per-sample shape {self._input_shape}, got {split.x.shape[1:]}"
            )
        return split

    @functools.cached_property
    def train(self) -> Split:
        """Training split."""
        return self._build("train")

    @functools.cached_property
    def val(self) -> Split:
        """Validation split."""
        return self._build("val")

    @functools.cached_property
    def test(self) -> Split:
        """Test split."""
        return self._build("test")

    def split(self, name: SplitName) -> Split:
        """Return the split called ``name`` ('train', 'val' or 'test')."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def split_hashes(self) -> dict[str, str]:
        """SHA-256 hex digest of every split (generates all splits)."""
        return {name: split_hash(self.split(name)) for name in SPLITS}

    def __repr__(self) -> str:
        return f"Dataset(name={self._name!r}, kind={self._kind!r}, input_shape={self._input_shape}, seed={self._seed})"


def _json_copy(obj):
    """Deep copy of a JSON-like structure made of dicts, lists and scalars."""
    if isinstance(obj, dict):
        return {k: _json_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_copy(v) for v in obj]
    return obj


def _split_rng(seed: int, dataset: str, split: str) -> np.random.Generator:
    """Generator seeded from ``(seed, dataset, split)``, stable across machines."""
    words = [int.from_bytes(hashlib.sha256(s.encode()).digest()[:4], "little") for s in (dataset, split)]
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


# --------------------------------------------------------------------------
# shapes: generated images
# --------------------------------------------------------------------------

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")
SHAPES_SIZE = 64
SHAPES_SPLIT_SIZES: dict[str, int] = {"train": 6000, "val": 1000, "test": 1000}
_SS = 4  # supersampling factor for anti-aliasing
_RADIUS_RANGE = (10.0, 22.0)  # circumradius in pixels at 64 px
_MIN_CONTRAST = 0.4  # min RGB distance shape colour vs. (most) background pixels
_STAR_INNER = 0.45


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices (in supersampled pixel coords) of a rotated regular polygon/star."""
    if kind == "square":
        n, radii = 4, (r,)
    elif kind == "triangle":
        n, radii = 3, (r,)
    elif kind == "star":
        n, radii = 5, (r, r * _STAR_INNER)
    else:
        raise ValueError(f"no polygon for shape {kind!r}")
    pts = []
    m = n * len(radii)
    for i in range(m):
        rad = radii[i % len(radii)]
        t = angle + 2.0 * math.pi * i / m
        pts.append((cx + rad * math.cos(t), cy + rad * math.sin(t)))
    return pts


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx: float, cy: float, r: float, angle: float) -> None:
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    else:
        draw.polygon(_shape_polygon(kind, cx, cy, r, angle), fill=255)


def _coverages(draw_fns: list[Callable[[ImageDraw.ImageDraw], None]]) -> np.ndarray:
    """Anti-aliased (H, W, k) float32 coverages in [0, 1] of k supersampled drawings.

    Each drawing goes into its own 'L' layer; layers are merged three at a time
    into one RGB image so a single ``reduce`` (box downsample) serves three layers.
    """
    big = SHAPES_SIZE * _SS
    out = np.empty((SHAPES_SIZE, SHAPES_SIZE, len(draw_fns)), dtype=np.float32)
    for start in range(0, len(draw_fns), 3):
        chunk = draw_fns[start : start + 3]
        layers = []
        for fn in chunk:
            im = Image.new("L", (big, big), 0)
            fn(ImageDraw.Draw(im))
            layers.append(im)
        while len(layers) < 3:
            layers.append(Image.new("L", (big, big), 0))
        # Box-filter reduction = exact area coverage of each output pixel
        # (~10x cheaper than LANCZOS and free of ringing).
        small = Image.merge("RGB", layers).reduce(_SS)
        arr = np.asarray(small, dtype=np.float32) * np.float32(1.0 / 255.0)
        out[..., start : start + len(chunk)] = arr[..., : len(chunk)]
    return out


def _background(rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 cluttered background: gradient + blotches + noise."""
    s = SHAPES_SIZE
    c0, c1 = rng.random(3), rng.random(3)
    theta = rng.uniform(0.0, 2.0 * math.pi)
    coords = np.arange(s, dtype=np.float64) / (s - 1) - 0.5
    proj = math.cos(theta) * coords[None, :] + math.sin(theta) * coords[:, None]
    t = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-9)
    bg = c0 + (c1 - c0) * t[..., None]
    if rng.random() < 0.6:  # low-frequency colour blotches
        k = int(rng.integers(3, 7))
        blot = rng.normal(0.0, rng.uniform(0.05, 0.2), size=(k, k, 3))
        blot_img = np.stack(
            [
                np.asarray(
                    Image.fromarray(blot[..., c].astype(np.float32), mode="F").resize((s, s), Image.Resampling.BICUBIC)
                )
                for c in range(3)
            ],
            axis=-1,
        )
        bg = bg + blot_img
    return np.clip(bg, 0.0, 1.0).astype(np.float32)


def _random_distractor(
    rng: np.random.Generator,
) -> Callable[[ImageDraw.ImageDraw], None]:
    """A random open stroke (line, arc or short polyline) -- never a class shape."""
    big = SHAPES_SIZE * _SS
    width = int(rng.integers(1, 4)) * _SS
    kind = int(rng.integers(0, 3))
    if kind == 0:  # straight line
        p = rng.uniform(0, big, size=4)
        pts = [(p[0], p[1]), (p[2], p[3])]
        return lambda d: d.line(pts, fill=255, width=width)
    if kind == 1:  # arc spanning at most 200 degrees (clearly not a circle)
        r = rng.uniform(6, 24) * _SS
        cx, cy = rng.uniform(0, big, size=2)
        start = rng.uniform(0, 360)
        end = start + rng.uniform(40, 200)
        box = (cx - r, cy - r, cx + r, cy + r)
        return lambda d: d.arc(box, start, end, fill=255, width=width)
    # open polyline with 2-3 segments, random walk with short steps
    n = int(rng.integers(3, 5))
    p = rng.uniform(0, big, size=2)
    pts = [tuple(p)]
    for _ in range(n - 1):
        step = rng.normal(0.0, 10.0 * _SS, size=2)
        p = np.clip(p + step, 0, big)
        pts.append(tuple(p))
    return lambda d: d.line(pts, fill=255, width=width, joint="curve")


def _shape_colour(rng: np.random.Generator, bg_pixels: np.ndarray) -> np.ndarray:
    """Pick an RGB colour far enough from the background pixels under the shape."""
    best, best_score = None, -1.0
    for _ in range(24):
        c = rng.random(3)
        score = float(np.percentile(np.linalg.norm(bg_pixels - c, axis=-1), 10))
        if score >= _MIN_CONTRAST:
            return c
        if score > best_score:
            best, best_score = c, score
    # fall back: push the best candidate away from the mean background colour
    mean = bg_pixels.mean(axis=0)
    return np.where(mean > 0.5, 0.0, 1.0) if best_score < _MIN_CONTRAST * 0.75 else best


def _render_shape_image(rng: np.random.Generator, label: int) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) float32 image in [0, 1] and its (H, W) bool object mask."""
    s, ss = SHAPES_SIZE, _SS
    kind = SHAPE_CLASSES[label]
    bg = _background(rng)

    # Sample every stroke first, then rasterise all layers in one go.
    n_behind = int(rng.integers(2, 6))
    behind = [_random_distractor(rng) for _ in range(n_behind)]
    behind_colours = rng.random((n_behind, 3)).astype(np.float32)
    r = rng.uniform(*_RADIUS_RANGE)
    margin = r + 1.0
    cx, cy = rng.uniform(margin, s - margin, size=2)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    # Occasionally one thin distractor crosses in front of the object.
    front = [_random_distractor(rng)] if rng.random() < 0.25 else []
    front_colour = rng.random(3).astype(np.float32)

    def shape_fn(d: ImageDraw.ImageDraw) -> None:
        _draw_shape(d, kind, cx * ss, cy * ss, r * ss, angle)

    cov = _coverages([shape_fn, *behind, *front])
    alpha = cov[..., 0]

    img = bg
    for j in range(n_behind):
        a = cov[..., 1 + j, None]
        img = img * (1.0 - a) + behind_colours[j] * a

    mask = alpha >= 0.5
    colour = _shape_colour(rng, img[mask]).astype(np.float32)
    img = img * (1.0 - alpha[..., None]) + colour * alpha[..., None]

    if front:
        a = np.minimum(cov[..., -1, None], np.float32(0.6))
        img = img * (1.0 - a) + front_colour * a

    # Pixel noise over everything.
    sigma = rng.uniform(0.01, 0.07)
    img = img + rng.normal(0.0, sigma, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32), mask


def generate_shapes(n: int, rng: np.random.Generator) -> Split:
    """Generate ``n`` class-balanced shapes images.

    Returns:
        Split with x ``(n, 64, 64, 3)`` float32 in [0, 1], y ``(n,)`` int32 in
        ``[0, 4)`` and mask ``(n, 64, 64)`` bool.
    """
    k = len(SHAPE_CLASSES)
    if n % k:
        raise ValueError(f"n must be a multiple of {k} for balanced classes, got {n}")
    y = rng.permutation(np.arange(n, dtype=np.int32) % k).astype(np.int32)
    x = np.empty((n, SHAPES_SIZE, SHAPES_SIZE, 3), dtype=np.float32)
    mask = np.empty((n, SHAPES_SIZE, SHAPES_SIZE), dtype=bool)
    for i in range(n):
        x[i], mask[i] = _render_shape_image(rng, int(y[i]))
    return _make_split(x, y, mask)


def _load_shapes(seed: int) -> Dataset:
    def make(split: str) -> Split:
        return generate_shapes(SHAPES_SPLIT_SIZES[split], _split_rng(seed, "shapes", split))

    return Dataset(
        name="shapes",
        kind="classification",
        input_shape=(SHAPES_SIZE, SHAPES_SIZE, 3),
        value_range=(0.0, 1.0),
        class_names=SHAPE_CLASSES,
        feature_names=None,
        preprocessing={},
        seed=seed,
        make_split=make,
    )


# --------------------------------------------------------------------------
# scikit-learn datasets
# --------------------------------------------------------------------------


def _stratified_indices(y: np.ndarray, seed: int, dataset: str) -> dict[str, np.ndarray]:
    """Stratified 70/15/15 train/val/test index split of labels ``y`` (N,)."""
    from sklearn.model_selection import train_test_split

    rs = int(_split_rng(seed, dataset, "split").integers(0, 2**31 - 1))
    idx = np.arange(len(y))
    train, rest = train_test_split(idx, test_size=0.30, stratify=y, random_state=rs)
    val, test = train_test_split(rest, test_size=0.50, stratify=y[rest], random_state=rs)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _from_splits(splits: dict[str, Split]) -> Callable[[str], Split]:
    return lambda name: splits[name]


def _load_digits(seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / np.float32(16.0)).reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int32)
    idx = _stratified_indices(y, seed, "digits")
    splits = {k: _make_split(x[v], y[v]) for k, v in idx.items()}
    return Dataset(
        name="digits",
        kind="classification",
        input_shape=(8, 8, 1),
        value_range=(0.0, 1.0),
        class_names=tuple(str(i) for i in range(10)),
        feature_names=None,
        preprocessing={"scale": 1.0 / 16.0},
        seed=seed,
        make_split=_from_splits(splits),
    )


def _load_breast_cancer(seed: int) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    x = bunch.data.astype(np.float64)
    y = bunch.target.astype(np.int32)
    idx = _stratified_indices(y, seed, "breast_cancer")
    mean = x[idx["train"]].mean(axis=0)
    std = x[idx["train"]].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    xs = ((x - mean) / std).astype(np.float32)
    splits = {k: _make_split(xs[v], y[v]) for k, v in idx.items()}
    return Dataset(
        name="breast_cancer",
        kind="classification",
        input_shape=(x.shape[1],),
        value_range=None,
        class_names=tuple(str(c) for c in bunch.target_names),
        feature_names=tuple(str(f) for f in bunch.feature_names),
        preprocessing={"mean": mean.tolist(), "std": std.tolist()},
        seed=seed,
        make_split=_from_splits(splits),
    )


FRIEDMAN1_SPLIT_SIZES: dict[str, int] = {"train": 4000, "val": 1000, "test": 1000}
FRIEDMAN1_NOISE = 0.5


def _load_friedman1(seed: int) -> Dataset:
    from sklearn.datasets import make_friedman1

    n = sum(FRIEDMAN1_SPLIT_SIZES.values())
    x, y = make_friedman1(n_samples=n, n_features=10, noise=FRIEDMAN1_NOISE, random_state=seed)
    n_tr, n_va = FRIEDMAN1_SPLIT_SIZES["train"], FRIEDMAN1_SPLIT_SIZES["val"]
    bounds = {"train": (0, n_tr), "val": (n_tr, n_tr + n_va), "test": (n_tr + n_va, n)}
    y_mean = float(y[:n_tr].mean())
    y_std = float(y[:n_tr].std())
    xf = x.astype(np.float32)
    yf = ((y - y_mean) / y_std).astype(np.float32)
    splits = {k: _make_split(xf[a:b], yf[a:b]) for k, (a, b) in bounds.items()}
    return Dataset(
        name="friedman1",
        kind="regression",
        input_shape=(10,),
        value_range=(0.0, 1.0),
        class_names=None,
        feature_names=tuple(f"x{i}" for i in range(10)),
        preprocessing={"y_mean": y_mean, "y_std": y_std, "noise": FRIEDMAN1_NOISE},
        seed=seed,
        make_split=_from_splits(splits),
    )


_LOADERS: dict[str, Callable[[int], Dataset]] = {
    "shapes": _load_shapes,
    "digits": _load_digits,
    "breast_cancer": _load_breast_cancer,
    "friedman1": _load_friedman1,
}


@functools.cache
def _load_cached(name: str, seed: int) -> Dataset:
    return _LOADERS[name](seed)


def load_dataset(name: str, *, seed: int = 0) -> Dataset:
    """Load dataset ``name`` (one of ``DATASETS``), cached per ``(name, seed)``.

    Raises:
        ValueError: if ``name`` is unknown or ``seed`` is not a non-negative int.
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return _load_cached(name, int(seed))
