"""Many tabs on one server (issue 9, "Many tabs" and "Follow the teacher"): T trainers and F followers.

    python benchmarks/bench_sessions.py            # cases 1+0, 8+8, 2+30, 1+0 (trainers+followers), ~15 min
    python benchmarks/bench_sessions.py --quick    # cases 1+0, 4+4 (< 5 min)
    python benchmarks/bench_sessions.py --cases 1+0 2+30 --profile   # py-spy the server in the last case

Each case starts `panel serve app` (KHRBM_MAX_TRAINERS = T, no idle release, one Numba thread) pinned to one
core and drives it from this process pinned to the other (``os.sched_setaffinity``, as ``taskset``): Chromium
(Playwright) and the headless followers. Every trainer is a real Chromium tab that opens the link (default:
the classroom story on MNIST, else the offline bars), shares its run and presses Start. Followers open
``/app?follow=CODE`` of the trainers in turn; the first ``--real-followers`` of them are Chromium tabs, the
others headless ``bokeh.client`` sessions (they receive every document update, without drawing it).

Measured, per case:

* samples/s of each trainer (both arms counted) over ``--window`` seconds, from the steps its tab shows; the
  total, and its share of the throughput of one session alone (the 1+0 cases of the same run, averaged);
* widget round trip: in every trainer tab, Pause then Start, ``--rounds`` times: the time from the click
  to the status line showing the new state, in that tab and in the Chromium followers of that run (all in
  the browser's own clock); p50 and p95 over all of them;
* bytes per redraw tick per tab (websocket frames received; Chromium trainers, Chromium followers, headless
  followers), server RSS (peak) and the server's CPU share of its core during the window, and of its event
  loop alone (the main thread: every tab's redraw and sending; per follower, a measure that holds on a loaded
  machine, where the share of the core the server gets does not);
* khrbm threads alive in the server once every tab closed (its log: "khrbm threads: N" after the last trainer
  closed).

Timings on a shared, loaded machine vary: compare the ratios within one run. The last line is
``classroom: p95 R s, throughput share S, threads left T`` for the largest case run.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync"]
SERVER_CORE, CLIENT_CORE = 1, 0
# In every Chromium tab: the status line's state, and waiting for a given one (resolves with the browser's
# clock in ms since the epoch, or null after the timeout). A MutationObserver on the shadow root that holds
# the status line notices the redraw at once.
JS_HELPERS = """() => {
  const deep = (root, sel) => {
    const hit = root.querySelector(sel); if (hit) return hit;
    for (const e of root.querySelectorAll('*'))
      if (e.shadowRoot) { const r = deep(e.shadowRoot, sel); if (r) return r; }
    return null;
  };
  window.__khrbm_deep = deep;
  window.__khrbm_state = () => {
    const el = deep(document, '.khrbm-statusline'); return el ? el.getAttribute('data-state') : null;
  };
  window.__khrbm_wait = (state, timeout) => new Promise(resolve => {
    const now = () => performance.timeOrigin + performance.now();
    if (window.__khrbm_state() === state) { resolve(now()); return; }
    const el = deep(document, '.khrbm-statusline');
    const root = el ? el.getRootNode() : document;
    const obs = new MutationObserver(() => {
      const s = (root.querySelector ? root.querySelector('.khrbm-statusline') : null)
                || deep(document, '.khrbm-statusline');
      if (s && s.getAttribute('data-state') === state) { obs.disconnect(); resolve(now()); }
    });
    obs.observe(root, {subtree: true, childList: true, attributes: true});
    setTimeout(() => { obs.disconnect(); resolve(null); }, timeout);
  });
  window.__khrbm_click = (css) => {          // a Panel button: the <button> in the shadow root of .css
    const host = deep(document, css);
    const b = (host.shadowRoot && host.shadowRoot.querySelector('button')) || host.querySelector('button');
    const t = performance.timeOrigin + performance.now(); b.click(); return t;
  };
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pin(core: int):
    try:
        os.sched_setaffinity(0, {core})
    except (AttributeError, OSError):
        pass


class Server:
    """`panel serve app` on one core, with its log; RSS and CPU time from /proc."""

    def __init__(self, trainers: int, log_path: Path):
        self.port = free_port()
        self.log_path = log_path
        env = dict(os.environ, PYTHONUNBUFFERED="1", KHRBM_MAX_TRAINERS=str(max(trainers, 1)),
                   KHRBM_IDLE_SECONDS="0", NUMBA_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "panel", "serve", "app", "--port", str(self.port), "--address", "127.0.0.1",
               "--allow-websocket-origin", f"127.0.0.1:{self.port}", "--check-unused-sessions", "500",
               "--unused-session-lifetime", "500"]
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     preexec_fn=lambda: pin(SERVER_CORE))
        probe = f"http://127.0.0.1:{self.port}/static/extensions/panel/css/loading.css"
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(probe, timeout=2)
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"the server did not start:\n{log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        self.url = f"http://127.0.0.1:{self.port}/app"

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self, thread: bool = False) -> float:
        """CPU seconds of the server process, or (``thread``) of its main thread alone: the event loop that
        redraws and sends every tab (the trainers' steps run on threads of their own)."""
        stat = f"/proc/{self.proc.pid}/task/{self.proc.pid}/stat" if thread else f"/proc/{self.proc.pid}/stat"
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def threads_left(self, trainers: int, timeout: float = 90.0) -> int | None:
        """khrbm threads alive after every trainer closed, from the log (None if they did not all close)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            text = self.log_path.read_text()
            closed = text.count("trainer closed (tab closed)")
            counts = re.findall(r"khrbm threads: (\d+)", text)
            if closed >= trainers and counts:
                time.sleep(2.0)                       # nothing more to come
                return int(re.findall(r"khrbm threads: (\d+)", self.log_path.read_text())[-1])
            time.sleep(0.5)
        return None

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


class Headless:
    """A follower without a browser: a bokeh.client session on its own thread and event loop that receives
    every document update (and applies it to its copy of the document) without drawing it."""

    def __init__(self, url: str, code: str):
        self.bytes = 0
        self.error = None
        self.loop = self.session = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url, code), name="bench-headless", daemon=True)
        self.thread.start()

    def _run(self, url, code):
        from bokeh.client import pull_session
        from bokeh.document.events import MessageSentEvent
        from bokeh.events import DocumentReady
        from tornado.ioloop import IOLoop
        try:
            asyncio.set_event_loop(asyncio.new_event_loop())
            self.loop = IOLoop.current()
            self.session = pull_session(url=url, arguments={"follow": code}, io_loop=self.loop)
            sock = self.session._connection._socket
            read = sock.read_message

            async def counted():
                message = await read()
                if message is not None:
                    self.bytes += len(message)
                return message
            sock.read_message = counted
            doc = self.session.document      # as a browser does once it drew the page: Panel's onload runs
            doc.callbacks.trigger_on_change(MessageSentEvent(doc, "bokeh_event", DocumentReady()))
            self.ready.set()
            self.loop.run_sync(self._receive)
        except Exception as exc:  # noqa: BLE001
            self.error = exc
            self.ready.set()

    async def _receive(self):
        """Apply every document update until the socket closes. (Not ``loop_until_closed``: bokeh.client's state
        machine awaits itself once per message, so a session that lives minutes dies of a RecursionError.)"""
        connection = self.session._connection
        while (message := await connection._pop_message()) is not None:
            if message.msgtype == "PATCH-DOC":
                self.session._handle_patch(message)

    def drawn(self) -> bool:
        """The server has drawn this follower's page: its status line shows a step."""
        try:
            models = list(self.session.document.models)
        except (AttributeError, RuntimeError):            # not pulled yet, or changing under us
            return False
        return any("khrbm-statusline" in str(getattr(m, "text", "")) and "data-step=" in str(m.text) for m in models)

    def close(self):
        if self.loop is not None and self.session is not None:
            self.loop.add_callback(self.session.close)
        self.thread.join(15)


class Tab:
    """A Chromium tab on the app, counting the bytes of the websocket frames it receives."""

    def __init__(self, browser, url: str):
        self.context = browser.new_context(viewport={"width": 1440, "height": 900})
        self.page = self.context.new_page()
        self.bytes = 0
        self.page.on("websocket", lambda ws: ws.on("framereceived", self._frame))
        self.page.goto(url, timeout=180_000)          # a loaded machine may take more than the default 30 s

    def _frame(self, payload):
        self.bytes += len(payload) if isinstance(payload, bytes) else len(payload.encode())

    def attr(self, name: str) -> str:
        return self.page.locator(".khrbm-statusline").first.get_attribute(f"data-{name}") or ""

    def wait(self, css: str, timeout: float = 180.0):
        self.page.locator(css).first.wait_for(timeout=timeout * 1000)

    def ready(self):
        self.page.evaluate(JS_HELPERS)

    def close(self):
        self.context.close()


def percentile(values, q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    if k == lo or values[hi] == values[lo]:                 # (a click not seen in 30 s counts as inf)
        return values[lo]
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def run_case(browser, trainers: int, followers: int, args, log_dir: Path, profile: Path | None = None) -> dict:
    from khrbm.app.lab import TICK_MS

    name = f"{trainers}+{followers}"
    server = Server(trainers, log_dir / f"bench-sessions-{name}.log")
    teachers, tabs, real_followers, headless = [], [], [], []
    try:
        t_open = time.time()
        for _ in range(trainers):
            tab = Tab(browser, f"{server.url}?{args.link}")
            tab.wait(".khrbm-statusline[data-state='idle']")
            tab.ready()
            tab.page.locator(".khrbm-share button").first.click()
            tab.wait(".khrbm-share-info [data-code]", 60)
            tab.code = tab.page.locator(".khrbm-share-info [data-code]").first.get_attribute("data-code")
            tab.batch = int(tab.page.locator(".khrbm-w-batch_size input").first.input_value())
            tab.followers = []
            teachers.append(tab)
        for i in range(followers):
            teacher = teachers[i % trainers]
            if len(real_followers) < args.real_followers:
                tab = Tab(browser, f"{server.url}?follow={teacher.code}")
                tab.wait(f".khrbm-seat[data-following='{teacher.code}']")
                tab.wait(".khrbm-statusline[data-step]")
                tab.ready()
                teacher.followers.append(tab)
                real_followers.append(tab)
            else:
                headless.append(Headless(server.url, teacher.code))
        for h in headless:
            h.ready.wait(120)
            if h.error is not None:
                raise RuntimeError(f"a headless follower failed: {h.error!r}")
            deadline = time.time() + 180
            while not h.drawn() and time.time() < deadline:
                time.sleep(0.3)
        tabs = teachers + real_followers
        opened = time.time() - t_open
        for tab in teachers:
            tab.page.evaluate("() => window.__khrbm_click('.khrbm-start')")
        for tab in teachers:
            tab.wait(".khrbm-statusline[data-state='running']", 120)
        pager = teachers[0].page
        pager.wait_for_timeout(args.warmup * 1000)      # Playwright hands over frame events only in its calls

        steps0 = [int(t.attr("step") or 0) for t in teachers]
        bytes0 = [t.bytes for t in tabs] + [h.bytes for h in headless]
        spy = profile_server(server.proc.pid, args.window, profile) if profile else None
        cpu0, loop0, t0 = server.cpu_seconds(), server.cpu_seconds(thread=True), time.time()
        pager.wait_for_timeout(args.window * 1000)
        dt = time.time() - t0
        cpu, loop = (server.cpu_seconds() - cpu0) / dt, (server.cpu_seconds(thread=True) - loop0) / dt
        steps1 = [int(t.attr("step") or 0) for t in teachers]
        bytes1 = [t.bytes for t in tabs] + [h.bytes for h in headless]
        arms = int(teachers[0].attr("arms") or 1)
        rates = [(s1 - s0) * t.batch * arms / dt for s0, s1, t in zip(steps0, steps1, teachers)]
        per_tick = [(b1 - b0) / dt * TICK_MS / 1000 for b0, b1 in zip(bytes0, bytes1)]
        n_t, n_f = len(teachers), len(real_followers)
        rss = server.peak_rss_mb()
        if spy is not None:
            spy.wait(60)
            print(f"  py-spy profile of the window: {profile}")

        own, seen = [], []                  # round trips in the clicking tab, and in its Chromium followers
        for _ in range(args.rounds):
            for teacher in teachers:
                for css, state in ((".khrbm-pause", "paused"), (".khrbm-start", "running")):
                    for f in teacher.followers:
                        f.page.evaluate(f"() => {{ window.__rt = window.__khrbm_wait('{state}', 30000); }}")
                    # the tab's own wait starts before the click, as its followers' do (a second call after
                    # the click measured Playwright reaching a busy page, not the status line changing)
                    t_click, t_seen = teacher.page.evaluate(
                        f"() => {{ const seen = window.__khrbm_wait('{state}', 30000); "
                        f"const t = window.__khrbm_click('{css}'); return seen.then(s => [t, s]); }}")
                    own.append(float("inf") if t_seen is None else (t_seen - t_click) / 1000)
                    for f in teacher.followers:
                        t_f = f.page.evaluate("() => window.__rt")
                        seen.append(float("inf") if t_f is None else (t_f - t_click) / 1000)
                    pager.wait_for_timeout(args.pause * 1000)
        every = own + seen
        for h in headless:
            h.close()
        for tab in tabs:
            tab.close()
        tabs = []
        left = server.threads_left(trainers)
        return dict(name=name, trainers=trainers, followers=followers, opened=opened, rates=rates,
                    total=sum(rates), cpu=cpu, loop=loop, rss=rss, p50=percentile(every, 0.5), p95=percentile(every, 0.95),
                    own95=percentile(own, 0.95), seen95=percentile(seen, 0.95), clicks=len(every),
                    tick_trainer=statistics.mean(per_tick[:n_t]),
                    tick_follower=statistics.mean(per_tick[n_t:n_t + n_f]) if n_f else float("nan"),
                    tick_headless=statistics.mean(per_tick[n_t + n_f:]) if headless else float("nan"),
                    threads_left=left, real_tabs=n_t + n_f, headless=len(headless))
    finally:
        for h in headless:
            if h.thread.is_alive():
                h.close()
        for tab in tabs:
            tab.close()
        server.stop()


def table(results: list, ref: float) -> str:
    """The cases as a Markdown table (for benchmarks/README.md)."""
    rows = ["| trainers + followers | Chromium / headless tabs | samples/s total | vs one alone | each trainer "
            "(vs one alone) | click p50 / p95 s | bytes/tick: trainer / Chromium follower / headless | server RSS MB,"
            " CPU (event loop) | threads left |", "|---|---:|---:|---:|---|---:|---:|---:|---:|"]
    for r in results:
        each = (f"{min(r['rates']) / ref:.0%}–{max(r['rates']) / ref:.0%}" if len(r["rates"]) > 1
                else f"{r['rates'][0] / ref:.0%}")
        ticks = " / ".join("–" if v != v else f"{v:,.0f}" for v in (r["tick_trainer"], r["tick_follower"],
                                                                     r["tick_headless"]))
        rows.append(f"| {r['name']} | {r['real_tabs']} / {r['headless']} | {r['total']:,.0f} | {r['total'] / ref:.0%} "
                    f"| {each} | {r['p50']:.2f} / {r['p95']:.2f} | {ticks} | {r['rss']:,.0f}, {r['cpu']:.0%} ({r['loop']:.0%}) "
                    f"| {r['threads_left']} |")
    return "\n".join(rows)


def profile_server(server_pid: int, seconds: float, out: Path):
    """py-spy the server (all threads, native frames off) for ``seconds``; a speedscope file."""
    exe = shutil.which("py-spy")
    if exe is None:
        print("  (py-spy not installed: pip install py-spy)")
        return None
    return subprocess.Popen([exe, "record", "--pid", str(server_pid), "--duration", str(int(seconds)),
                             "--format", "speedscope", "--output", str(out), "--threads", "--idle"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="cases 1+0 and 4+4, shorter windows (< 5 min)")
    ap.add_argument("--cases", nargs="+", default=None, metavar="T+F",
                    help="trainers+followers per case [default: 1+0 8+8 2+30 1+0]")
    ap.add_argument("--link", default=None, help="query of the trainers' link [default: preset=story, or "
                                                 "preset=bars&epochs=2000 without MNIST]")
    ap.add_argument("--real-followers", type=int, default=2, help="followers that are Chromium tabs [2]")
    ap.add_argument("--warmup", type=float, default=6.0, help="seconds of training before measuring [6]")
    ap.add_argument("--window", type=float, default=20.0, help="seconds of the throughput window [20]")
    ap.add_argument("--rounds", type=int, default=3, help="Pause/Start rounds per trainer tab [3]")
    ap.add_argument("--pause", type=float, default=0.7, help="seconds between two clicks [0.7]")
    ap.add_argument("--profile", action="store_true", help="py-spy the server during the last case's window")
    args = ap.parse_args()
    if args.quick:
        args.cases = args.cases or ["1+0", "4+4"]
        args.window, args.warmup, args.rounds = min(args.window, 12.0), min(args.warmup, 4.0), min(args.rounds, 2)
    cases = [tuple(int(x) for x in c.split("+")) for c in (args.cases or ["1+0", "8+8", "2+30", "1+0"])]
    if any(t < 1 or f < 0 for t, f in cases):
        ap.error("each case is T+F with T >= 1 trainers and F >= 0 followers")

    from playwright.sync_api import sync_playwright

    import khrbm.app.lab  # noqa: F401 - the app's Bokeh models, for the headless followers' documents
    from khrbm import data

    args.link = args.link or ("preset=story" if data.dataset_status("mnist")[0] else "preset=bars&epochs=2000")
    pin(CLIENT_CORE)                                   # this process, Chromium and the headless followers
    log_dir = REPO / "runs"
    log_dir.mkdir(exist_ok=True)
    load = os.getloadavg()[0]
    print(f"link ?{args.link}; server on core {SERVER_CORE}, browser on core {CLIENT_CORE}; load average {load:.1f}")
    results = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for i, (t, f) in enumerate(cases):
            last = i == len(cases) - 1
            r = run_case(browser, t, f, args, log_dir, log_dir / f"bench-sessions-{t}+{f}.speedscope.json"
                         if args.profile and last else None)
            results.append(r)
            refs = [x["total"] for x in results if x["followers"] == 0 and x["trainers"] == 1]
            ref = statistics.mean(refs) if refs else float("nan")
            shares = " ".join(f"{x / ref:.0%}" for x in r["rates"]) if refs else "?"
            print(f"\n{r['name']}: {t} trainer(s), {f} follower(s) ({r['real_tabs']} Chromium tabs, {r['headless']} "
                  f"headless); opened in {r['opened']:.0f} s")
            print(f"  samples/s: total {r['total']:,.0f} ({r['total'] / ref:.0%} of one session alone); each "
                  f"{' '.join(f'{x:,.0f}' for x in r['rates'])} (shares {shares})")
            print(f"  round trip ({r['clicks']} clicks → views): p50 {r['p50']:.2f} s, p95 {r['p95']:.2f} s "
                  f"(own tab p95 {r['own95']:.2f} s, followers' p95 {r['seen95']:.2f} s)")
            print(f"  bytes per tick per tab: trainer {r['tick_trainer']:,.0f}, Chromium follower "
                  f"{r['tick_follower']:,.0f}, headless follower {r['tick_headless']:,.0f}")
            per = f", {r['loop'] / f * 1000:.1f} ms/s per follower" if f else ""
            print(f"  server: peak RSS {r['rss']:,.0f} MB, CPU {r['cpu']:.0%} of a core (event loop {r['loop']:.0%}"
                  f"{per}); khrbm threads after all tabs closed: {r['threads_left']}")
        browser.close()
    refs = [x["total"] for x in results if x["followers"] == 0 and x["trainers"] == 1]
    ref = statistics.mean(refs) if refs else float("nan")
    big = max(results, key=lambda x: (x["trainers"] + x["followers"], x["followers"]))
    print(f"\none session alone: {ref:,.0f} samples/s (mean of {len(refs)}); load average at the start "
          f"{load:.1f}, now {os.getloadavg()[0]:.1f}\n")
    print(table(results, ref))
    for r in results:
        if r["followers"] >= 30:
            fast, kept = r["p95"] < 1.0, r["total"] >= 0.8 * ref
            print(f"\n{r['name']}: round-trip p95 {r['p95']:.2f} s ({'' if fast else 'NOT '}< 1 s), total throughput "
                  f"{r['total'] / ref:.0%} of one session alone ({'' if kept else 'NOT '}≥ 80 %)")
    print(f"classroom: p95 {big['p95']:.2f} s, throughput share {big['total'] / ref:.2f}, threads left "
          f"{big['threads_left']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
