"""Procedural scene renderer shared by every synthetic layout.

A scene is an RGB image plus a *partition* of its pixels into segments of six
abstract classes and a void region:

* stuff — ``'sky'`` (a blue gradient band at the top with an irregular
  horizon), ``'grass'`` (green, vertically streaked) and ``'sand'`` (beige,
  speckled, rippled) ground regions split by a wavy boundary;
* things — ``'disk'`` (red-ish, radially shaded), ``'box'`` (violet-ish,
  rotated rectangle) and ``'triangle'`` (orange-ish, rotated), 1-6 per image,
  placed freely, touching another instance or overlapping it (the later one
  occludes the earlier one and the masks say so);
* crowd — sometimes a cluster of tiny disks, one ``iscrowd`` segment of class
  ``'disk'``;
* void — sometimes a thin dark "power line" across the sky, label 255.

Layouts (:mod:`.layouts`) only map these abstract names to their own
categories and write files; nothing here knows about file formats.
"""
import colorsys
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import cv2
import numpy as np

THING_NAMES = ('disk', 'box', 'triangle')
STUFF_NAMES = ('sky', 'grass', 'sand')
CLASS_NAMES = THING_NAMES + STUFF_NAMES

# Class-typical thing appearance: (hue range in degrees, saturation range,
# value range). Hues are far apart from each other and from the stuff.
_THING_HSV = {
    'disk': ((-12., 12.), (0.65, 0.95), (0.55, 0.95)),
    'box': ((255., 290.), (0.55, 0.90), (0.45, 0.85)),
    'triangle': ((25., 45.), (0.75, 1.00), (0.80, 1.00)),
}
# Fraction of images (by index) rendered without any thing: every 10th.
EMPTY_EVERY = 10


@dataclass
class Segment:
    """One segment of a scene.

    Attributes:
        name (str): Abstract class name, one of :data:`CLASS_NAMES`.
        mask (np.ndarray): ``(H, W)`` bool mask of the *visible* pixels.
        iscrowd (bool): Whether this is a crowd region (things only).
        amodal (np.ndarray, optional): For things, the ``(H, W)`` bool mask
            of the full shape, including the parts later things occlude.
    """
    name: str
    mask: np.ndarray
    iscrowd: bool = False
    amodal: Optional[np.ndarray] = None

    @property
    def isthing(self) -> bool:
        return self.name in THING_NAMES

    @property
    def area(self) -> int:
        return int(self.mask.sum())


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image (np.ndarray): ``(H, W, 3)`` uint8 RGB image.
        segments (list[Segment]): Stuff segments first (sky, grass, sand
            order), then things in drawing order (a crowd region, if any,
            comes first among them). Masks are pairwise disjoint, non-empty,
            and together with :attr:`void` cover every pixel exactly once.
        void (np.ndarray): ``(H, W)`` bool mask of the void (ignore) pixels.
    """
    image: np.ndarray
    segments: List[Segment] = field(default_factory=list)
    void: Optional[np.ndarray] = None

    @property
    def things(self) -> List[Segment]:
        return [s for s in self.segments if s.isthing and not s.iscrowd]


def image_rng(seed: int, split_index: int, index: int) -> np.random.Generator:
    """Random generator of one image, independent of how many images the
    split has (so ``--num-train 8`` renders a prefix of ``--num-train 64``)."""
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), int(split_index), int(index)]))


# ----------------------------------------------------------------- textures
def _smooth_noise(rng, shape, scale: float, ksize=None) -> np.ndarray:
    """Zero-mean, unit-ish std noise smoothed with a Gaussian of ``scale``."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if ksize is not None:
        noise = cv2.blur(noise, ksize)
    elif scale > 0:
        noise = cv2.GaussianBlur(noise, (0, 0), scale)
    std = float(noise.std())
    return noise / std if std > 0 else noise


def _wavy_line(rng, length: int, base: float, amp: float) -> np.ndarray:
    """An irregular 1-D profile: a few sines plus a smoothed random walk."""
    t = np.arange(length, dtype=np.float32) / max(length, 1)
    line = np.full(length, base, np.float32)
    for k in range(3):
        freq = rng.uniform(0.5, 3.0) * (k + 1)
        line += amp / (k + 1) * np.sin(2 * np.pi * freq * t +
                                        rng.uniform(0, 2 * np.pi))
    walk = np.cumsum(rng.standard_normal(length)).astype(np.float32)
    walk = cv2.GaussianBlur(walk.reshape(1, -1), (0, 0), 3).ravel()
    walk -= walk.mean()
    return line + 0.25 * amp * walk / max(float(np.abs(walk).max()), 1e-6)


def _sky(rng, h, w, yy) -> np.ndarray:
    top = np.array([rng.uniform(40, 80), rng.uniform(90, 130),
                    rng.uniform(180, 220)], np.float32)
    low = np.array([rng.uniform(160, 190), rng.uniform(195, 220),
                    rng.uniform(230, 250)], np.float32)
    t = (yy / max(h - 1, 1))[..., None]
    img = top * (1 - t) + low * t
    clouds = np.clip(_smooth_noise(rng, (h, w), max(h, w) / 16.), 0.8, None)
    return img + 12 * (clouds - 0.8)[..., None]


def _grass(rng, h, w, unit) -> np.ndarray:
    base = np.array([rng.uniform(50, 90), rng.uniform(115, 160),
                     rng.uniform(30, 60)], np.float32)
    blade = max(3, int(round(unit * 0.08)) | 1)
    blades = _smooth_noise(rng, (h, w), 0, ksize=(1, blade))  # vertical
    patches = _smooth_noise(rng, (h, w), max(h, w) / 12.)
    return (base + (18 * blades + 10 * patches)[..., None] *
            np.array([0.6, 1.0, 0.4], np.float32))


def _sand(rng, h, w, yy, xx) -> np.ndarray:
    base = np.array([rng.uniform(200, 230), rng.uniform(175, 200),
                     rng.uniform(120, 150)], np.float32)
    speckle = rng.standard_normal((h, w)).astype(np.float32)
    dots = (rng.random((h, w)) < 0.03) * rng.choice([-45., 35.], (h, w))
    freq, tilt = rng.uniform(0.25, 0.45), rng.uniform(-0.3, 0.3)
    ripples = np.sin(freq * (yy + tilt * xx))
    return base + (8 * speckle + dots + 9 * ripples)[..., None]


def _thing_texture(rng, name, shape_mask_box, h, w) -> np.ndarray:
    """Class-typical colour with shading, as a full ``(H, W, 3)`` layer."""
    (h0, h1), (s0, s1), (v0, v1) = _THING_HSV[name]
    hue = (rng.uniform(h0, h1) % 360.) / 360.
    rgb = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(s0, s1),
                                       rng.uniform(v0, v1)), np.float32) * 255
    cx, cy, radius = shape_mask_box
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # light from the top-left: brighter there, darker bottom-right
    if name == 'disk':
        d = np.hypot(xx - (cx - 0.35 * radius), yy - (cy - 0.35 * radius))
        shade = 1.15 - 0.45 * np.clip(d / (1.6 * radius), 0, 1)
    else:
        shade = 1.0 - 0.2 * np.clip(
            ((xx - cx) + (yy - cy)) / (2 * radius), -1, 1)
    noise = 5 * rng.standard_normal((h, w)).astype(np.float32)
    return rgb * shade[..., None] + noise[..., None]


# ------------------------------------------------------------------ shapes
def _shape_mask(name, h, w, cx, cy, radius, angle, aspect) -> np.ndarray:
    """Bool mask of a thing's full (unoccluded) shape."""
    mask = np.zeros((h, w), np.uint8)
    if name == 'disk':
        cv2.circle(mask, (int(round(cx)), int(round(cy))),
                   int(round(radius)), 1, -1)
        return mask.astype(bool)
    if name == 'box':
        hx, hy = radius * aspect ** 0.5, radius / aspect ** 0.5
        corners = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        scale = 0.8  # half-diagonal ~ radius
    else:  # triangle, circumradius ~ 1.25 radius
        a = np.deg2rad([90., 210., 330.])
        corners = np.stack([np.cos(a), -np.sin(a)], 1) * np.array(
            [aspect ** 0.5, 1 / aspect ** 0.5]) * radius
        scale = 1.25
    rot = np.array([[np.cos(angle), -np.sin(angle)],
                    [np.sin(angle), np.cos(angle)]])
    pts = (corners * scale) @ rot.T + np.array([cx, cy])
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask.astype(bool)


def _has_holes_or_parts(mask: np.ndarray) -> bool:
    """Whether a mask is split in several parts or has holes (COCO polygons
    cannot represent holes; split parts are hard to count)."""
    num, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if num != 2:
        return True
    num_bg, _ = cv2.connectedComponents(
        np.pad(~mask, 1, constant_values=True).astype(np.uint8),
        connectivity=4)
    return num_bg != 2


# ------------------------------------------------------------------ render
class SceneRenderer:
    """Render random scenes of a fixed size.

    Args:
        size (tuple[int, int]): ``(H, W)`` of the images.
        max_things (int): Maximum number of thing instances per image.
        crowd_prob (float): Probability of a crowd region per non-empty image.
        void_prob (float): Probability of a thin void line per image.
    """

    def __init__(self,
                 size: Tuple[int, int] = (192, 256),
                 max_things: int = 6,
                 crowd_prob: float = 0.3,
                 void_prob: float = 0.3) -> None:
        self.h, self.w = int(size[0]), int(size[1])
        self.max_things = max_things
        self.crowd_prob = crowd_prob
        self.void_prob = void_prob
        self.unit = float(min(self.h, self.w))
        # thing "radius" range: >= 9 px so that every thing is >= 12 px
        # across in every direction (the thinnest: a 1.4:1 box, 1.35 r)
        self.min_radius = max(9., 0.06 * self.unit)
        self.max_radius = max(self.min_radius + 3., 0.15 * self.unit)

    def __call__(self, rng: np.random.Generator, empty: bool = False) -> Scene:
        """Render one scene; ``empty=True`` draws no thing and no crowd."""
        h, w = self.h, self.w
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        stuff = self._stuff_layout(rng, yy, xx)
        image = np.zeros((h, w, 3), np.float32)
        image[stuff == 0] = _sky(rng, h, w, yy)[stuff == 0]
        image[stuff == 1] = _grass(rng, h, w, self.unit)[stuff == 1]
        image[stuff == 2] = _sand(rng, h, w, yy, xx)[stuff == 2]

        void = np.zeros((h, w), bool)
        if rng.random() < self.void_prob:
            void = self._void_line(rng)
            image[void] = np.array([35., 35., 40.]) + 6 * rng.standard_normal(
                (int(void.sum()), 1))

        # owner map: -1 stuff/void, k >= 0 index into `things`
        owner = np.full((h, w), -1, np.int32)
        things: List[Tuple[str, bool, np.ndarray]] = []  # name, crowd, full
        if not empty:
            if rng.random() < self.crowd_prob:
                self._add_crowd(rng, image, owner, things)
            for _ in range(int(rng.integers(1, self.max_things + 1))):
                self._add_thing(rng, image, owner, things)

        image += 3 * rng.standard_normal((h, w, 3)).astype(np.float32)
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)

        segments = []
        free = (owner < 0) & ~void
        for k, name in enumerate(STUFF_NAMES):
            mask = free & (stuff == k)
            if mask.any():
                segments.append(Segment(name, mask))
        for k, (name, crowd, full) in enumerate(things):
            segments.append(
                Segment(name, owner == k, iscrowd=crowd, amodal=full))
        return Scene(image=image, segments=segments, void=void & (owner < 0))

    # stuff ---------------------------------------------------------------
    def _stuff_layout(self, rng, yy, xx) -> np.ndarray:
        """Stuff index map: 0 sky, 1 grass, 2 sand."""
        h, w = self.h, self.w
        horizon = _wavy_line(rng, w, rng.uniform(0.28, 0.5) * h, 0.06 * h)
        ground = yy >= horizon[None, :]
        mode = rng.random()
        if mode < 0.15:
            return np.where(ground, 1, 0).astype(np.uint8)
        if mode < 0.3:
            return np.where(ground, 2, 0).astype(np.uint8)
        # a wavy, slanted grass/sand boundary, grass on a random side
        split = _wavy_line(rng, h, rng.uniform(0.3, 0.7) * w, 0.06 * w)
        split = split + rng.uniform(-0.4, 0.4) * (np.arange(h) - h / 2)
        left = xx < split[:, None]
        grass_left = rng.random() < 0.5
        grass = left if grass_left else ~left
        return np.where(ground, np.where(grass, 1, 2), 0).astype(np.uint8)

    def _void_line(self, rng) -> np.ndarray:
        """A sagging 2-3 px wire across the upper part of the image."""
        h, w = self.h, self.w
        x = np.linspace(-2, w + 1, 48)
        y0, y1 = rng.uniform(0.05, 0.35, size=2) * h
        sag = rng.uniform(0.03, 0.12) * h
        t = (x - x[0]) / (x[-1] - x[0])
        y = y0 * (1 - t) + y1 * t + sag * 4 * t * (1 - t)
        mask = np.zeros((h, w), np.uint8)
        pts = np.round(np.stack([x, y], 1)).astype(np.int32)
        cv2.polylines(mask, [pts], False, 1, int(rng.integers(2, 4)))
        return mask.astype(bool)

    # things --------------------------------------------------------------
    def _add_crowd(self, rng, image, owner, things) -> None:
        """A cluster of tiny disks, annotated as one crowd region."""
        h, w = self.h, self.w
        r_small = max(2, int(round(0.012 * self.unit)))
        spread = 0.09 * self.unit
        cx = rng.uniform(spread + 3, w - spread - 3)
        cy = rng.uniform(max(0.55 * h, spread + 3), h - spread - 3)
        full = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(8, 16))):
            ox, oy = rng.uniform(-spread, spread, size=2)
            cv2.circle(full, (int(round(cx + ox)), int(round(cy + oy))),
                       r_small, 1, -1)
        full = full.astype(bool)
        layer = _thing_texture(rng, 'disk', (cx, cy, spread), h, w)
        image[full] = layer[full]
        owner[full] = len(things)
        things.append(('disk', True, full))

    def _add_thing(self, rng, image, owner, things, tries: int = 30) -> None:
        """Place one thing (free / touching / overlapping); give up quietly
        when no valid placement is found in ``tries`` attempts."""
        h, w = self.h, self.w
        name = THING_NAMES[int(rng.integers(len(THING_NAMES)))]
        radius = min(rng.uniform(self.min_radius, self.max_radius),
                     (min(h, w) - 3) / 2.6)  # keep 2 * reach + 2 inside
        angle, aspect = rng.uniform(0, np.pi), rng.uniform(0.7, 1.4)
        reach = 1.3 * radius  # conservative half-extent of every shape
        if reach * 2 + 2 > min(h, w):
            return
        solo = [k for k, t in enumerate(things) if not t[1]]
        mode = rng.choice(['free', 'touch', 'overlap'], p=[0.5, 0.25, 0.25])
        if not solo:
            mode = 'free'
        for _ in range(tries):
            if mode == 'free':
                cx = rng.uniform(reach, w - reach)
                cy = rng.uniform(reach, h - reach)
            else:
                ref = things[solo[int(rng.integers(len(solo)))]][2]
                ys, xs = np.nonzero(ref)
                rcx, rcy = xs.mean(), ys.mean()
                ref_r = 0.5 * max(np.ptp(xs), np.ptp(ys)) + 1
                theta = rng.uniform(0, 2 * np.pi)
                dist = (ref_r + radius) * (
                    rng.uniform(0.45, 0.8) if mode == 'overlap' else 0.5)
                cx = rcx + dist * np.cos(theta)
                cy = rcy + dist * np.sin(theta)
            full = self._fit(rng, name, cx, cy, radius, angle, aspect,
                             things, touch=(mode == 'touch'), ref=(
                                 ref if mode == 'touch' else None),
                             theta=(theta if mode == 'touch' else None))
            if full is None:
                continue
            if mode == 'free' and (owner[full] >= 0).any():
                continue
            if not self._occlusion_ok(owner, things, full):
                continue
            layer = _thing_texture(rng, name, (cx, cy, radius), h, w)
            image[full] = layer[full]
            owner[full] = len(things)
            things.append((name, False, full))
            return

    def _fit(self, rng, name, cx, cy, radius, angle, aspect, things,
             touch=False, ref=None, theta=None) -> Optional[np.ndarray]:
        """Full mask of a shape centred at ``(cx, cy)``; for touching
        placement slide it away from ``ref`` until they no longer overlap
        (they then share a border). ``None`` if it leaves the image."""
        h, w = self.h, self.w
        for _ in range(int(self.unit)):
            full = _shape_mask(name, h, w, cx, cy, radius, angle, aspect)
            if not touch or not (full & ref).any():
                break
            cx, cy = cx + np.cos(theta), cy + np.sin(theta)
        else:
            return None
        # the whole shape must be inside the image (no truncated things)
        ys, xs = np.nonzero(full)
        if len(xs) == 0 or xs.min() == 0 or ys.min() == 0 or \
                xs.max() == w - 1 or ys.max() == h - 1:
            return None
        if _has_holes_or_parts(full):
            return None
        return full

    def _occlusion_ok(self, owner, things, full) -> bool:
        """Each occluded earlier thing keeps >= 55% of its area, one piece,
        no holes; a crowd keeps >= 50%."""
        for k in np.unique(owner[full]):
            if k < 0:
                continue
            prev_full = things[k][2]
            visible = (owner == k) & ~full
            if visible.sum() < 0.5 * prev_full.sum():
                return False
            if not things[k][1] and (
                    visible.sum() < 0.55 * prev_full.sum()
                    or _has_holes_or_parts(visible)):
                return False
        return True
