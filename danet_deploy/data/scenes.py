"""Procedural street scenes with pixel-exact labels, for training and checking the demo model.

Why generate data instead of shipping a dataset: the demo model must be trainable on a laptop
CPU, fully offline, with no licence questions, and its evaluation must be reproducible bit for
bit. A seeded generator gives all three, and disjoint seed ranges give train/val/calibration
splits that can never leak into each other.

Scenes follow the long-range layout of a real street (sky at the top, road at the bottom,
facades and trees converging to one vanishing point), so the DANet attention has global
structure to exploit, while colour/texture/lighting jitter and occlusion keep it from being a
colour-lookup problem. All geometry is drawn in resolution-independent units from one random
stream, and pixel noise from a second stream, so the same seed gives the *same scene* at every
resolution (only finer): a model trained at 256x256 sees the same class geometry at 512x512.

Only numpy and Pillow (for polygon filling) are used, so this works without torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from ..errors import ConfigError
from ..model.registry import DEMO_CLASSES

ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(len(DEMO_CLASSES))
IGNORE_INDEX = 255
#: The most pixels a generated scene may have (4096x4096, about 0.8 GB at the peak of rendering):
#: larger ones fail in numpy's allocator, and training renders several at once.
MAX_SCENE_PIXELS = 4096 * 4096
#: The limit in words, for the messages that refuse a size above it.
SCENE_LIMIT_TEXT = f"{MAX_SCENE_PIXELS / 1e6:.1f} megapixels (4096x4096)"

#: Disjoint seed ranges: a scene's split is decided by its seed alone, so splits never overlap.
SPLITS: dict[str, range] = {
    "train": range(0, 1_000_000),
    "val": range(1_000_000, 1_100_000),
    "calib": range(2_000_000, 2_100_000),
}

Point = tuple[float, float]
Color = tuple[int, int, int]


class _Canvas:
    """An RGB image and its label map, painted together so they can never disagree."""

    def __init__(self, image: Image.Image, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.image = image
        self.label = Image.new("L", (width, height), SKY)
        self._rgb = ImageDraw.Draw(self.image)
        self._lab = ImageDraw.Draw(self.label)

    def px(self, x: float, y: float) -> tuple[float, float]:
        """Normalised (x in widths, y in heights) to pixel coordinates."""
        return x * self.width, y * self.height

    def polygon(self, points: list[Point], color: Color, cls: int | None) -> None:
        pts = [self.px(x, y) for x, y in points]
        self._rgb.polygon(pts, fill=color)
        if cls is not None:
            self._lab.polygon(pts, fill=cls)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, color: Color, cls: int | None) -> None:
        """An ellipse; ``rx``/``ry`` are in heights so shapes stay round at any aspect ratio."""
        x, y = self.px(cx, cy)
        box = [x - rx * self.height, y - ry * self.height, x + rx * self.height, y + ry * self.height]
        self._rgb.ellipse(box, fill=color)
        if cls is not None:
            self._lab.ellipse(box, fill=cls)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: Color, cls: int | None) -> None:
        self.polygon([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color, cls)


@dataclass(frozen=True)
class _Street:
    """Perspective frame: ground lines all meet at the vanishing point ``(vx, horizon)``.

    A ground line is given by its x at the bottom row (depth ``t = 1``); at depth ``t`` (0 at the
    horizon) it is at ``x = vx + t * (x_bottom - vx)``, ``y = horizon + t * (1 - horizon)``.
    Objects at depth ``t`` are drawn ``t`` times their near size, which is what makes the
    layout read as 3-D.
    """

    horizon: float
    vx: float
    aspect: float  # width / height, to convert metres (in heights) to widths

    def at(self, x_bottom: float, t: float) -> Point:
        return self.vx + t * (x_bottom - self.vx), self.horizon + t * (1.0 - self.horizon)

    def up(self, point: Point, height: float) -> Point:
        return point[0], point[1] - height

    def metres(self, m: float, t: float) -> float:
        """``m`` metres at depth ``t``, in image heights (1 m is ~11% of the height up close)."""
        return 0.11 * m * t

    def metres_x(self, m: float, t: float) -> float:
        return self.metres(m, t) / self.aspect


def _jitter(rng: np.random.Generator, base: Color, amount: int) -> Color:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in base)  # type: ignore[return-value]


def _mix(a: Color, b: Color, w: float) -> Color:
    return tuple(int(round(a[i] * (1 - w) + b[i] * w)) for i in range(3))  # type: ignore[return-value]


_BUILDING_COLORS: tuple[Color, ...] = (
    (178, 160, 134),
    (150, 84, 64),
    (196, 190, 178),
    (120, 118, 122),
    (212, 196, 160),
    (166, 126, 96),
    (140, 150, 160),
    (230, 222, 206),
)
_CAR_COLORS: tuple[Color, ...] = (
    (180, 20, 24),
    (30, 50, 150),
    (220, 220, 224),
    (30, 30, 34),
    (120, 124, 130),
    (200, 170, 30),
    (20, 110, 60),
    (160, 160, 168),
    (90, 20, 90),
)
_CLOTHES: tuple[Color, ...] = (
    (30, 30, 40),
    (200, 40, 40),
    (40, 60, 160),
    (230, 230, 230),
    (90, 70, 50),
    (60, 120, 70),
    (220, 180, 40),
    (120, 120, 130),
    (150, 60, 140),
)
_SKIN: tuple[Color, ...] = ((236, 200, 170), (200, 150, 110), (140, 96, 66), (90, 60, 44))


def _sky(rng: np.random.Generator, height: int, width: int) -> tuple[Image.Image, Color]:
    """Vertical gradient background; clear blue, hazy or overcast, returns the horizon tint."""
    kind = rng.choice(3, p=[0.55, 0.25, 0.2])
    if kind == 0:
        top, bottom = _jitter(rng, (70, 130, 210), 25), _jitter(rng, (170, 205, 235), 20)
    elif kind == 1:
        top, bottom = _jitter(rng, (120, 160, 200), 20), _jitter(rng, (225, 215, 200), 20)
    else:
        top, bottom = _jitter(rng, (150, 155, 165), 20), _jitter(rng, (200, 202, 206), 15)
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    grad = np.asarray(top, np.float32) * (1 - ramp) + np.asarray(bottom, np.float32) * ramp
    img = np.broadcast_to(grad, (height, width, 3)).astype(np.uint8)
    return Image.fromarray(img, "RGB"), bottom


def _clouds(c: _Canvas, rng: np.random.Generator, horizon: float) -> None:
    for _ in range(int(rng.integers(0, 5))):
        cx, cy = rng.uniform(0, 1), rng.uniform(0.02, horizon * 0.7)
        color = _jitter(rng, (235, 238, 242), 12)
        for _ in range(int(rng.integers(3, 7))):
            c.ellipse(
                cx + rng.uniform(-0.08, 0.08),
                cy + rng.uniform(-0.02, 0.02),
                rng.uniform(0.03, 0.07),
                rng.uniform(0.015, 0.03),
                color,
                None,
            )


def _windows(rng: np.random.Generator) -> tuple[Color, Color, int, int]:
    glass = _jitter(rng, (rng.choice([40, 70, 110]), 70, 90), 25)
    frame = _jitter(rng, (230, 230, 225), 20)
    return glass, frame, int(rng.integers(2, 6)), int(rng.integers(2, 5))


def _skyline(c: _Canvas, rng: np.random.Generator, s: _Street, x0: float, x1: float, haze: Color) -> None:
    """Distant buildings (or a tree line) standing on the horizon between the two facades."""
    x = x0 - 0.05
    while x < x1 + 0.05:
        w = rng.uniform(0.05, 0.16)
        if rng.random() < 0.22:  # distant trees
            green = _mix(_jitter(rng, (60, 110, 50), 20), haze, 0.25)
            for _ in range(4):
                c.ellipse(
                    x + rng.uniform(0, w),
                    s.horizon - rng.uniform(0.0, 0.03),
                    rng.uniform(0.02, 0.045),
                    rng.uniform(0.02, 0.04),
                    green,
                    VEGETATION,
                )
            x += w
            continue
        top = s.horizon - rng.uniform(0.06, 0.3)
        color = _mix(_jitter(rng, _BUILDING_COLORS[rng.integers(len(_BUILDING_COLORS))], 18), haze, 0.3)
        c.rect(x, top, x + w, s.horizon + 0.01, color, BUILDING)
        glass, _, cols, _ = _windows(rng)
        glass = _mix(glass, haze, 0.3)
        rows = max(1, int((s.horizon - top) / 0.035))
        for i in range(cols + 1):
            for j in range(rows):
                wx = x + w * (i + 0.3) / (cols + 1.2)
                wy = top + 0.012 + j * 0.035
                if wy + 0.02 < s.horizon:
                    c.rect(wx, wy, wx + w * 0.45 / (cols + 1), wy + 0.018, glass, None)
        x += w + (rng.uniform(0.0, 0.05) if rng.random() < 0.3 else 0.0)


def _facades(c: _Canvas, rng: np.random.Generator, s: _Street, base_x: float, side: int, haze: Color) -> float:
    """A row of building facades along one side; returns how far into the image they reach.

    Facades are quads between a ground line and a roof line through the vanishing point, so
    windows shrink towards the horizon exactly like the road does.
    """
    t = rng.uniform(1.2, 2.2)
    t_far = rng.uniform(0.12, 0.4)
    while t > t_far:
        t_next = max(t_far, t - rng.uniform(0.25, 0.9) * t)
        storeys = rng.uniform(3, 8)
        h = s.metres(3.2 * storeys, 1.0)  # facade height at depth 1, in image heights
        color = _jitter(rng, _BUILDING_COLORS[rng.integers(len(_BUILDING_COLORS))], 22)
        color = _mix(color, haze, 0.1)
        near, far = s.at(base_x, t), s.at(base_x, t_next)
        c.polygon([near, far, s.up(far, h * t_next), s.up(near, h * t)], color, BUILDING)
        glass, frame, cols, _ = _windows(rng)
        n_cols = int(max(1, (t - t_next) * cols * 3))
        n_rows = max(1, int(storeys))
        for i in range(n_cols):
            ta = t - (t - t_next) * (i + 0.25) / n_cols
            tb = t - (t - t_next) * (i + 0.75) / n_cols
            pa, pb = s.at(base_x, ta), s.at(base_x, tb)
            for j in range(n_rows):
                lo, hi = (j + 0.35) / n_rows, (j + 0.8) / n_rows
                quad = [s.up(pa, h * ta * lo), s.up(pb, h * tb * lo), s.up(pb, h * tb * hi), s.up(pa, h * ta * hi)]
                if rng.random() < 0.85:
                    c.polygon(quad, frame if rng.random() < 0.15 else glass, None)
        t = t_next - (rng.uniform(0.02, 0.1) * t_next if rng.random() < 0.3 else 0.0)
    far = s.at(base_x, t_far)
    return far[0]


def _hedge(c: _Canvas, rng: np.random.Generator, s: _Street, base_x: float, side: int) -> float:
    """A tree line / park along one side instead of buildings."""
    t_far = rng.uniform(0.1, 0.3)
    t = rng.uniform(1.2, 2.0)
    greens = [_jitter(rng, (50, 100, 40), 25), _jitter(rng, (80, 130, 50), 25), _jitter(rng, (35, 75, 35), 20)]
    while t > t_far:
        p = s.at(base_x + side * rng.uniform(0.0, 0.3), t)
        r = s.metres(rng.uniform(2.0, 3.5), t)
        trunk = s.metres(rng.uniform(1.0, 3.0), t)
        c.rect(
            p[0] - s.metres_x(0.2, t),
            p[1] - trunk - r,
            p[0] + s.metres_x(0.2, t),
            p[1],
            _jitter(rng, (90, 64, 40), 15),
            VEGETATION,
        )
        for _ in range(4):
            c.ellipse(
                p[0] + rng.uniform(-0.6, 0.6) * r / s.aspect,
                p[1] - trunk - r + rng.uniform(-0.5, 0.4) * r,
                r * rng.uniform(0.6, 1.0),
                r * rng.uniform(0.6, 1.0),
                greens[rng.integers(3)],
                VEGETATION,
            )
        t -= rng.uniform(0.08, 0.25) * t
    return s.at(base_x, t_far)[0]


def _ground(c: _Canvas, rng: np.random.Generator, s: _Street) -> tuple[float, float, float, float]:
    """Grass, road, lane marks and both sidewalks; returns bottom-row x of the four edges."""
    grass = _jitter(rng, (90, 130, 60), 25)
    c.rect(-0.1, s.horizon, 1.1, 1.1, grass, VEGETATION)
    half = rng.uniform(0.3, 0.6)
    centre = s.vx + rng.uniform(-0.1, 0.1)
    road_l, road_r = centre - half, centre + half
    walk_l, walk_r = road_l - rng.uniform(0.15, 0.45), road_r + rng.uniform(0.15, 0.45)
    far = 0.0
    walk = _jitter(rng, ((150, 146, 140), (176, 160, 140), (140, 140, 146))[rng.integers(3)], 18)
    curb = _mix(walk, (230, 230, 230), 0.4)
    for a, b in ((walk_l, road_l), (road_r, walk_r)):
        c.polygon([s.at(a, 1.2), s.at(b, 1.2), s.at(b, far), s.at(a, far)], walk, SIDEWALK)
        # Paving joints: darker cross lines at regular depths.
        joint = _mix(walk, (60, 60, 60), 0.25)
        t = 1.2
        while t > 0.05:
            w = 0.004 * t
            c.polygon([s.at(a, t), s.at(b, t), s.at(b, t - w), s.at(a, t - w)], joint, None)
            t *= 0.82
    asphalt = _jitter(rng, (rng.integers(70, 115),) * 3, 8)
    c.polygon([s.at(road_l, 1.2), s.at(road_r, 1.2), s.at(road_r, far), s.at(road_l, far)], asphalt, ROAD)
    for edge, sign in ((road_l, 1), (road_r, -1)):  # curbs, labelled sidewalk
        off = edge - sign * 0.02
        c.polygon([s.at(edge, 1.2), s.at(off, 1.2), s.at(off, far), s.at(edge, far)], curb, SIDEWALK)
    mark = _jitter(rng, (225, 225, 215), 15)
    lanes = int(rng.integers(1, 3))
    for k in range(1, lanes + 1):
        x = road_l + (road_r - road_l) * k / (lanes + 1)
        dashed = rng.random() < 0.7
        t = 1.2
        while t > 0.04:
            t2 = t * (0.85 if dashed else 0.02)
            c.polygon([s.at(x - 0.012, t), s.at(x + 0.012, t), s.at(x + 0.012, t2), s.at(x - 0.012, t2)], mark, ROAD)
            t = t2 * (0.85 if dashed else 1.0)
    if rng.random() < 0.4:  # crosswalk
        t0 = rng.uniform(0.3, 0.8)
        for i in range(8):
            xa = road_l + (road_r - road_l) * (i + 0.2) / 8
            xb = road_l + (road_r - road_l) * (i + 0.7) / 8
            c.polygon([s.at(xa, t0), s.at(xb, t0), s.at(xb, t0 * 0.9), s.at(xa, t0 * 0.9)], mark, ROAD)
    return walk_l, road_l, road_r, walk_r


def _car(c: _Canvas, rng: np.random.Generator, s: _Street, x_bottom: float, t: float) -> None:
    """A car seen from behind: body, cabin with glass, wheels, lights (all labelled car)."""
    x, y = s.at(x_bottom, t)
    w, h = s.metres_x(rng.uniform(1.7, 2.1), t), s.metres(rng.uniform(1.3, 1.8), t)
    body = _jitter(rng, _CAR_COLORS[rng.integers(len(_CAR_COLORS))], 20)
    tyre = _jitter(rng, (25, 25, 28), 8)
    wheel_w = w * 0.16
    c.rect(x - w / 2 + 0.02 * w, y - h * 0.25, x - w / 2 + wheel_w, y, tyre, CAR)
    c.rect(x + w / 2 - wheel_w, y - h * 0.25, x + w / 2 - 0.02 * w, y, tyre, CAR)
    c.rect(x - w / 2, y - h * 0.6, x + w / 2, y - h * 0.12, body, CAR)
    cabin = [(x - w * 0.45, y - h * 0.6), (x + w * 0.45, y - h * 0.6), (x + w * 0.35, y - h), (x - w * 0.35, y - h)]
    c.polygon(cabin, _mix(body, (0, 0, 0), 0.15), CAR)
    glass = [
        (x - w * 0.39, y - h * 0.63),
        (x + w * 0.39, y - h * 0.63),
        (x + w * 0.31, y - h * 0.94),
        (x - w * 0.31, y - h * 0.94),
    ]
    c.polygon(glass, _jitter(rng, (60, 75, 90), 20), None)
    light = _jitter(rng, (200, 30, 30), 25)
    c.rect(x - w * 0.48, y - h * 0.5, x - w * 0.34, y - h * 0.4, light, None)
    c.rect(x + w * 0.34, y - h * 0.5, x + w * 0.48, y - h * 0.4, light, None)
    c.rect(x - w * 0.12, y - h * 0.36, x + w * 0.12, y - h * 0.26, (230, 230, 230), None)


def _person(c: _Canvas, rng: np.random.Generator, s: _Street, x_bottom: float, t: float) -> None:
    """A pedestrian: legs, torso, arms, head (all labelled person)."""
    x, y = s.at(x_bottom, t)
    h = s.metres(rng.uniform(1.55, 1.9), t)
    w = s.metres_x(0.45, t)
    pants = _jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))], 20)
    shirt = _jitter(rng, _CLOTHES[rng.integers(len(_CLOTHES))], 20)
    skin = _jitter(rng, _SKIN[rng.integers(len(_SKIN))], 12)
    stride = rng.uniform(-0.25, 0.25) * w
    c.polygon(
        [
            (x - w * 0.35, y - h * 0.5),
            (x - w * 0.02, y - h * 0.5),
            (x - w * 0.1 - stride, y),
            (x - w * 0.4 - stride, y),
        ],
        pants,
        PERSON,
    )
    c.polygon(
        [
            (x + w * 0.02, y - h * 0.5),
            (x + w * 0.35, y - h * 0.5),
            (x + w * 0.4 + stride, y),
            (x + w * 0.1 + stride, y),
        ],
        pants,
        PERSON,
    )
    c.rect(x - w * 0.42, y - h * 0.84, x + w * 0.42, y - h * 0.48, shirt, PERSON)
    c.rect(x - w * 0.58, y - h * 0.82, x - w * 0.4, y - h * 0.5, shirt, PERSON)
    c.rect(x + w * 0.4, y - h * 0.82, x + w * 0.58, y - h * 0.5, shirt, PERSON)
    c.ellipse(x, y - h * 0.92, h * 0.075, h * 0.085, skin, PERSON)
    if rng.random() < 0.5:  # hair or hat
        c.ellipse(x, y - h * 0.96, h * 0.07, h * 0.045, _jitter(rng, (40, 30, 25), 20), PERSON)


def _pole(c: _Canvas, rng: np.random.Generator, s: _Street, x_bottom: float, t: float, side: int) -> None:
    """A lamp post or sign post, with its arm / plate (all labelled pole)."""
    x, y = s.at(x_bottom, t)
    h = s.metres(rng.uniform(4.0, 8.0), t)
    w = max(s.metres_x(0.22, t), 1.5 / c.width)
    color = _jitter(rng, ((70, 72, 76), (120, 122, 110), (40, 60, 50))[rng.integers(3)], 15)
    c.rect(x - w / 2, y - h, x + w / 2, y, color, POLE)
    if rng.random() < 0.5:  # lamp arm towards the road
        arm = s.metres_x(rng.uniform(1.0, 2.0), t) * -side
        c.rect(min(x, x + arm), y - h, max(x, x + arm), y - h + s.metres(0.18, t), color, POLE)
    else:  # sign plate
        r = s.metres(0.35, t)
        c.ellipse(
            x, y - h + r, r, r, _jitter(rng, ((200, 30, 30), (30, 70, 180), (230, 190, 30))[rng.integers(3)], 20), POLE
        )


def _tree(c: _Canvas, rng: np.random.Generator, s: _Street, x_bottom: float, t: float) -> None:
    x, y = s.at(x_bottom, t)
    trunk_h = s.metres(rng.uniform(2.0, 3.5), t)
    r = s.metres(rng.uniform(1.6, 2.8), t)
    c.rect(
        x - s.metres_x(0.17, t),
        y - trunk_h - r * 0.5,
        x + s.metres_x(0.17, t),
        y,
        _jitter(rng, (95, 70, 45), 15),
        VEGETATION,
    )
    base = _jitter(rng, (60, 115, 45), 25)
    for _ in range(int(rng.integers(4, 8))):
        c.ellipse(
            x + rng.uniform(-0.7, 0.7) * r / s.aspect,
            y - trunk_h - r + rng.uniform(-0.6, 0.5) * r,
            r * rng.uniform(0.45, 0.8),
            r * rng.uniform(0.45, 0.8),
            _jitter(rng, base, 22),
            VEGETATION,
        )


def _objects(
    c: _Canvas,
    rng: np.random.Generator,
    s: _Street,
    edges: tuple[float, float, float, float],
    crowd: np.random.Generator | None = None,
) -> None:
    """Cars on the road, people, poles and trees on the sidewalks, painted far to near.

    ``crowd`` (training only) adds extra pedestrians and poles drawn entirely from their own
    stream: they are sorted into the same far-to-near order, so they occlude and are occluded
    correctly, while every base object keeps its random draws (same seed, same base scene).
    """
    walk_l, road_l, road_r, walk_r = edges
    items: list[tuple[float, Callable[[], None]]] = []

    def add(t: float, fn: Callable[..., None], *args: object, stream: np.random.Generator = rng) -> None:
        items.append((t, lambda: fn(c, stream, s, *args)))

    for _ in range(int(rng.integers(0, 7))):
        t = rng.uniform(0.12, 1.0)
        add(t, _car, rng.uniform(road_l + 0.12, road_r - 0.12), t)
    for _ in range(int(rng.integers(0, 7))):
        t, side = rng.uniform(0.12, 1.05), rng.choice([-1, 1])
        a, b = (walk_l, road_l) if side < 0 else (road_r, walk_r)
        if rng.random() < 0.15:  # someone crossing the road
            a, b = road_l, road_r
        add(t, _person, rng.uniform(a + 0.03, b - 0.03), t)
    for side, a, b in ((-1, walk_l, road_l), (1, road_r, walk_r)):
        n_poles = int(rng.integers(0, 4))
        for _ in range(n_poles):
            t = rng.uniform(0.15, 1.1)
            add(t, _pole, b - 0.05 if side < 0 else a + 0.05, t, side)
        for _ in range(int(rng.integers(0, 4))):
            t = rng.uniform(0.15, 1.0)
            add(t, _tree, a + 0.06 if side < 0 else b - 0.06, t)
    if crowd is not None:
        _crowd(crowd, edges, add)
    for _, draw in sorted(items, key=lambda item: item[0]):
        # ``rng`` is drawn from in paint order, which sorting makes independent of insertion order.
        draw()


def _crowd(rng: np.random.Generator, edges: tuple[float, float, float, float], add: Callable[..., None]) -> None:
    """Extra pedestrians (often crossing, at every distance) and poles: the rare, small classes."""
    walk_l, road_l, road_r, walk_r = edges
    for _ in range(int(rng.integers(1, 7))):
        t = float(rng.uniform(0.1, 1.1))
        where = rng.random()
        if where < 0.3:  # crossing the road, in front of or behind the cars
            a, b = road_l, road_r
        else:
            a, b = (walk_l, road_l) if where < 0.65 else (road_r, walk_r)
        add(t, _person, float(rng.uniform(a + 0.02, b - 0.02)), t, stream=rng)
    for _ in range(int(rng.integers(0, 3))):
        side = -1 if rng.random() < 0.5 else 1
        t = float(rng.uniform(0.12, 1.1))
        add(t, _pole, (road_l - 0.04) if side < 0 else (road_r + 0.04), t, side, stream=rng)


def _low_freq(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1] (bilinear upsampling of a coarse grid)."""
    grid = rng.uniform(0, 255, size=(cells, cells)).astype(np.uint8)
    field = np.asarray(Image.fromarray(grid, "L").resize((width, height), Image.Resampling.BILINEAR), np.float32)
    return field / 127.5 - 1.0


def _photometric(
    image: np.ndarray, label: np.ndarray, geo: np.random.Generator, noise: np.random.Generator
) -> np.ndarray:
    """Lighting, colour cast, per-class texture grain, shading and sensor noise."""
    h, w = label.shape
    img = image.astype(np.float32)
    gain = geo.uniform(0.65, 1.25)
    cast = 1.0 + geo.uniform(-0.08, 0.08, size=3).astype(np.float32)
    shade_amp, noise_sigma = geo.uniform(0.05, 0.2), geo.uniform(2.0, 9.0)
    # Texture grain per class (sky is smooth, vegetation and asphalt are rough); drawn at a
    # fixed size relative to the scene so it scales with the geometry, then resized.
    grain_strength = np.array([14, 9, 8, 26, 2, 5, 5, 4], np.float32)
    gh, gw = max(8, h // 2), max(8, w // 2)
    grain = noise.standard_normal((gh, gw), dtype=np.float32)
    grain_img = Image.fromarray(np.clip(grain * 40 + 128, 0, 255).astype(np.uint8), "L")
    grain = np.asarray(grain_img.resize((w, h), Image.Resampling.BILINEAR), np.float32) / 40.0 - 3.2
    lut = np.zeros(256, np.float32)
    lut[: grain_strength.size] = grain_strength
    img += (grain * lut[label])[..., None]
    shade = 1.0 + shade_amp * _low_freq(noise, h, w, 5)
    img *= (shade * gain)[..., None] * cast
    img += noise.standard_normal((h, w, 1), dtype=np.float32) * noise_sigma
    return np.clip(img, 0, 255).astype(np.uint8)


def generate_scene(
    seed: int, height: int = 512, width: int = 512, crowd: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One street scene: ``(image uint8 [H, W, 3] RGB, label uint8 [H, W])``.

    Labels index :data:`DEMO_CLASSES`. The same ``seed`` always gives the same scene, and the
    same layout at every resolution (the geometry stream does not depend on ``height``/``width``).
    ``crowd=True`` adds 1-6 pedestrians and 0-2 poles from a fifth stream (training uses it for
    the rare classes); ``crowd=False``, the default for evaluation, gives the original scenes.
    """
    if height < 16 or width < 16:
        raise ConfigError(f"scene size must be at least 16x16, got {height}x{width}")
    if seed < 0:
        raise ConfigError(f"scene seeds are non-negative integers, got {seed}")
    # Independent streams per stage, so changing one stage's drawing keeps the others stable.
    geo, ground, sides, noise = (np.random.default_rng([int(seed), k]) for k in range(4))
    street = _Street(horizon=float(geo.uniform(0.33, 0.52)), vx=float(geo.uniform(0.3, 0.7)), aspect=width / height)
    sky, haze = _sky(geo, height, width)
    canvas = _Canvas(sky, height, width)
    _clouds(canvas, geo, street.horizon)
    _skyline(canvas, geo, street, 0.0, 1.0, haze)
    edges = _ground(canvas, ground, street)
    for side, base in ((-1, edges[0]), (1, edges[3])):
        if sides.random() < 0.7:
            _facades(canvas, sides, street, base, side, haze)
        else:
            _hedge(canvas, sides, street, base, side)
    _objects(canvas, sides, street, edges, np.random.default_rng([int(seed), 4]) if crowd else None)
    label = np.asarray(canvas.label, np.uint8).copy()
    image = _photometric(np.asarray(canvas.image), label, geo, noise)
    if geo.random() < 0.5:  # mirror half the scenes so left/right layouts are balanced
        image, label = image[:, ::-1].copy(), label[:, ::-1].copy()
    return image, label


class SceneDataset:
    """``count`` scenes of one split at ``size=(H, W)``; item ``i`` uses seed ``split.start + i``."""

    def __init__(
        self, split: str = "train", size: tuple[int, int] = (512, 512), count: int = 100, offset: int = 0
    ) -> None:
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
        seeds = SPLITS[split]
        if count < 1 or offset < 0 or offset + count > len(seeds):
            raise ConfigError(f"split {split!r} holds {len(seeds)} scenes; asked for {count} from offset {offset}")
        self.split, self.size, self.count, self.offset = split, (int(size[0]), int(size[1])), count, offset

    def seed(self, index: int) -> int:
        if not -self.count <= index < self.count:
            raise IndexError(f"scene index {index} out of range for {self.count} scenes")
        return SPLITS[self.split].start + self.offset + (index % self.count)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return generate_scene(self.seed(index), *self.size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(self.count):
            yield self[i]
