"""What one follower's redraw costs the server's event loop, in CPU time (issue 9, "Follow the teacher").

    python benchmarks/bench_follow_cost.py                       # 30 followers of one run, frames shared
    python benchmarks/bench_follow_cost.py --own-snapshots       # each follower draws a snapshot of its own

N followers' dashboards (``khrbm.app.dashboard.Dashboard``, each in a Bokeh document of its own, as each tab's
is) redraw a real run's snapshots, as many rounds as asked; every redraw's document events are serialised as
the server does it (a PATCH-DOC message: its JSON and binary buffers). Measured: event-loop CPU time per
follower redraw (``time.thread_time``: other processes on the machine do not count) and bytes per redraw.
With ``--own-snapshots`` every follower draws a different snapshot (the followers' redraws before frames were
shared: each tab's tick at its own phase read the trainer's latest snapshot); else all draw the round's one
frame (``follow.Share.frame``). Mosaics every ``--mosaic-every`` rounds, at a phase of each follower's own.
Run it with PYTHONPATH at two trees to compare them (their ratio, run by run, on this machine).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))


def snapshots(n: int, dataset: str):
    """``n`` distinct snapshots of a real run (story-like: M = 100, KH_TD against plain, Fig. 2 probe on)."""
    from khrbm.config import RunConfig
    from khrbm.data import load_dataset
    from khrbm.train.trainer import Trainer

    size = dict(train_size=2000, val_size=500) if dataset == "mnist" else {}
    cfg = RunConfig(dataset=dataset, n_hidden=100, init="std", kh_mode="td", eps0=0.04, delta=0.4, radius=1.0,
                    epochs=30, batch_size=100, **size)
    trainer = Trainer(cfg, cfg.replace(kh_mode="off"), dataset=load_dataset(dataset))
    try:
        out = []
        trainer.step(30)
        trainer.sync(600)
        for i in range(n):
            if i == n // 2:
                trainer.update(arm="A", delta=0.3)                 # the teacher's change: a marker
            trainer.step(3)
            out.append(trainer.sync(600))
        return out
    finally:
        trainer.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--followers", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--mosaic-every", type=float, default=2.5, help="rounds between a follower's mosaics [2.5]")
    ap.add_argument("--own-snapshots", action="store_true", help="every follower draws a snapshot of its own")
    ap.add_argument("--dataset", default=None, help="mnist (default when present) or bars")
    args = ap.parse_args()

    from bokeh.document import Document
    from bokeh.protocol import Protocol

    from khrbm import data
    from khrbm.app.dashboard import Dashboard

    dataset = args.dataset or ("mnist" if data.dataset_status("mnist")[0] else "bars")
    n = args.followers
    snaps = snapshots(args.rounds + n + 1, dataset)
    protocol = Protocol()
    followers = []
    for _ in range(n):
        board, doc, events = Dashboard(), Document(), []
        board.rebuild(snaps[0])
        for view in board.v.values():
            doc.add_root(view.fig)
        doc.callbacks.on_change(lambda event, events=events: events.append(event))
        followers.append((board, doc, events))
    cpu, sent = [], []
    for r in range(args.rounds):
        t0 = time.thread_time()
        size = 0
        for i, (board, doc, events) in enumerate(followers):
            snap = snaps[r + 1 + (i if args.own_snapshots else 0)]
            heavy = int((r + i / n) / args.mosaic_every) != int((r - 1 + i / n) / args.mosaic_every)
            events.clear()
            board.update(snap, heavy)
            if events:
                msg = protocol.create("PATCH-DOC", list(events))
                size += len(msg.content_json) + sum(len(b.to_bytes()) for b in msg.buffers)
        cpu.append((time.thread_time() - t0) / n)
        sent.append(size / n)
    warm = cpu[1:] or cpu
    how = "each its own snapshot" if args.own_snapshots else "one shared frame"
    print(f"{n} followers, {args.rounds} rounds ({how}, {dataset}): per follower redraw "
          f"{statistics.median(warm) * 1000:.2f} ms of CPU (median; mean {statistics.mean(warm) * 1000:.2f}), "
          f"{statistics.mean(sent[1:] or sent) / 1000:.1f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
