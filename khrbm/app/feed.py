"""What the server sends each browser tab, kept small (issue 9, "Many tabs"): a growing curve goes as its new
points (``ColumnDataSource.stream``), thinned once it is long; an image goes as 8-bit codes of a colour map,
and only when it changed. Pure NumPy (no Bokeh, no Panel).

Measured with ``benchmarks/bench_tab_bytes.py`` (see benchmarks/README.md): the whole history and float32
images on every redraw cost ~100–190 kB per tick per tab; increments and 8-bit images a small fraction.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

MAX_POINTS = 1000          # a curve shows at most ~2 x this many points (the newest half of them all)
CODES = 254                # 8-bit image codes 0..254 span [lo, hi]; NAN_CODE marks a missing value
NAN_CODE = 255


def thin(x: np.ndarray, y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most about ``max_points`` points of a series: the newest ``max_points // 2`` all, the older ones
    at an even stride that keeps the first point (so the start of a run stays on the plot)."""
    n = len(x)
    if n <= max_points:
        return x, y
    half = max_points // 2
    old = n - half
    idx = np.r_[np.arange(0, old, -(-old // half)), np.arange(old, n)]
    return x[idx], y[idx]


class SeriesFeed:
    """What a figure's data source holds of one growing series (a metric history that only appends between
    resets), and what to send it next: :meth:`next` gives ``None`` (nothing new), ``("stream", new points)``
    or ``("replace", all points, thinned)``. A replace comes for the first points, when the series shrank or
    changed its past, or when streaming would leave more than ``2 * max_points`` points in the source.

    The first points are never streamed: a figure built in the same redraw reaches the browser with its data
    as it is when the redraw is sent, and a stream in that redraw would add the points a second time."""

    def __init__(self, max_points: int = MAX_POINTS):
        self.max_points = max_points
        self.covered = 0       # points of the series the source has seen (shown or thinned away)
        self.shown = 0         # points in the source
        self.last = None       # (x, y) of the last point seen

    def next(self, x: np.ndarray, y: np.ndarray):
        n = len(x)
        last = (float(x[-1]), float(y[-1])) if n else None
        if n == self.covered and last == self.last:
            return None
        grew = n > self.covered > 0 and (float(x[self.covered - 1]), float(y[self.covered - 1])) == self.last
        if grew and self.shown + n - self.covered <= 2 * self.max_points:
            op, data = "stream", {"x": x[self.covered:], "y": y[self.covered:]}
            self.shown += n - self.covered
        else:
            tx, ty = thin(x, y, self.max_points)
            op, data = "replace", {"x": tx, "y": ty}
            self.shown = len(tx)
        self.covered, self.last = n, last
        return op, data


def codes(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``image`` as uint8 codes of a colour map over [lo, hi]: 0..CODES linearly (values outside clipped),
    NAN_CODE where the value is missing. A palette of CODES + 1 colours then shows it as the float image
    would (one colour per code)."""
    img = np.asarray(image, dtype=np.float64)
    out = np.full(img.shape, NAN_CODE, dtype=np.uint8)
    ok = np.isfinite(img)
    scaled = (np.clip(img[ok], lo, hi) - lo) / (hi - lo) * CODES
    out[ok] = np.rint(scaled).astype(np.uint8)
    return out


class Changes:
    """Remembers the last value sent under each key; :meth:`new` says whether a value differs from it."""

    def __init__(self):
        self._sent: dict = {}

    def new(self, key, value) -> bool:
        old = self._sent.get(key)
        same = old is not None and (np.array_equal(old, value) if isinstance(value, np.ndarray) else old == value)
        if not same:
            self._sent[key] = value.copy() if isinstance(value, np.ndarray) else value
        return not same


class Memo:
    """What every tab drawing the same snapshot sends alike (a mosaic's 8-bit codes, the probe images, the
    curves' arrays and markers), computed once: the latest ``size`` results by key (a key names every input of
    the result, e.g. the weights' checksum and the mosaic's shape, or :func:`frame_key`). Followers of a shared
    run then cost the server the sending, not the computing."""

    def __init__(self, size: int = 64):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key, compute):
        """The value for ``key``, from ``compute()`` the first time (outside the lock: two tabs may both compute
        a new key, which is harmless)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = compute()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def frame_key(snap, what: str) -> tuple:
    """The :class:`Memo` key of ``what`` drawn from snapshot ``snap``: its publish time and version name it
    (every follower of a shared run draws the same frame, ``follow.Share.frame``)."""
    return (what, snap.version, snap.time)


SHARED = Memo(size=128)
