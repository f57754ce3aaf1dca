"""What the server sends a tab (khrbm/app/feed.py and the views that use it): curves as increments,
thinned when long; images as 8-bit codes, and nothing when nothing changed."""
from __future__ import annotations

import numpy as np
import pytest

from khrbm.app import feed


def test_thin_keeps_the_first_point_and_the_newest_half():
    x = np.arange(5000.0)
    tx, ty = feed.thin(x, -x, max_points=1000)
    assert tx[0] == 0 and np.array_equal(tx[-500:], x[-500:]) and np.array_equal(ty, -tx)
    assert 900 <= len(tx) <= 1000 and np.all(np.diff(tx) > 0)
    short = np.arange(10.0)
    assert feed.thin(short, short)[0] is short


def _replay(series, max_points):
    """Feed the growing prefixes of ``series`` and rebuild what a data source would hold."""
    f, held, ops = feed.SeriesFeed(max_points), np.zeros(0), []
    for n in series:
        x = np.arange(float(n))
        step = f.next(x, x * 2)
        if step is None:
            ops.append(None)
            continue
        op, data = step
        ops.append(op)
        held = np.concatenate([held, data["x"]]) if op == "stream" else data["x"]
    return held, ops


def test_a_growing_series_is_streamed_and_the_source_holds_it_all():
    held, ops = _replay([3, 3, 7, 12], max_points=100)
    assert ops == ["replace", None, "stream", "stream"]          # the first points: see SeriesFeed
    assert np.array_equal(held, np.arange(12.0))


def test_a_long_series_is_thinned_now_and_then_and_keeps_its_start():
    held, ops = _replay(range(1, 400), max_points=40)
    assert ops.count("replace") < 20 and held[0] == 0 and held[-1] == 398
    assert len(held) <= 80 and np.all(np.diff(held) > 0)


def test_a_series_that_shrank_or_changed_its_past_is_replaced():
    f = feed.SeriesFeed()
    f.next(np.arange(5.0), np.ones(5))
    assert f.next(np.arange(3.0), np.ones(3))[0] == "replace"            # shorter: a reset or a load
    f2 = feed.SeriesFeed()
    f2.next(np.arange(4.0), np.ones(4))
    assert f2.next(np.arange(6.0), np.r_[np.ones(3), 5.0, 1, 1])[0] == "replace"   # the last point seen differs


def test_codes_span_the_range_and_mark_missing_values():
    img = np.array([[-1.0, 0.0, 1.0], [np.nan, 2.0, -0.5]])
    c = feed.codes(img, -1.0, 1.0)
    assert c.dtype == np.uint8
    assert c.tolist() == [[0, 127, 254], [255, 254, 64]]


def test_changes_remember_what_was_sent():
    sent = feed.Changes()
    a = np.arange(3)
    assert sent.new("a", a) and not sent.new("a", a.copy())
    a[0] = 7                                                              # the caller's array changed
    assert sent.new("a", a) and sent.new("b", 1) and not sent.new("b", 1)


def test_curves_view_streams_new_points_to_the_browser():
    pytest.importorskip("bokeh")
    from bokeh.document import Document
    from bokeh.document.events import ColumnDataChangedEvent, ColumnsStreamedEvent

    from khrbm.app import views

    view = views.CurvesView("t", "epoch", "MSE", [dict(key="A", label="A", color="red")], log_y=True)
    doc = Document()
    doc.add_root(view.fig)
    events = []
    doc.on_change(lambda e: events.append(type(e)))
    x = np.arange(0.0, 3.0)
    view.update({"A": (x, 0.5 / (1 + x))})
    view.update({"A": (np.arange(0.0, 5.0), 0.5 / (1 + np.arange(0.0, 5.0)))})
    view.update({"A": (np.arange(0.0, 5.0), 0.5 / (1 + np.arange(0.0, 5.0)))})       # nothing new
    # the first points replace the data (a figure sent in the same redraw carries them already), then streams
    data_events = [e for e in events if e in (ColumnDataChangedEvent, ColumnsStreamedEvent)]
    assert data_events == [ColumnDataChangedEvent, ColumnsStreamedEvent]
    assert list(view.sources["A"].data["x"]) == [0, 1, 2, 3, 4]
    lo, hi = view.fig.y_range.start, view.fig.y_range.end                           # log axis: 0.1 .. 0.5 inside
    assert 0 < lo < 0.1 and hi > 0.5 and view.fig.y_scale.__class__.__name__ == "LogScale"
