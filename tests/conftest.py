"""Shared test setup.

Browser tests (the app in headless Chromium): ``panel_serve``, the session's ``khrbm_app_server`` and
``khrbm_browser``, and :class:`Tab`, one browser tab on the app with the helpers the tests use.

Real MNIST: ``KHRBM_DATA_DIR`` if set, else ``../shared/data`` beside the repository when it exists, else
the user cache (``khrbm data fetch mnist``). Tests that need it ask for the ``mnist_dir`` fixture, which
skips with one line saying how to get the data, or fails when ``KHRBM_REQUIRE_REAL_DATA=1`` (set by
``.ci/run``) so that a skip can never hide a regression in CI.
"""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

# scikit-learn's check_array_api_input (numpy namespace) runs only with SciPy's array-API mode, which must be on
# before SciPy is first imported; without it the estimator checks would skip that check.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}
no_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists() and not shutil.which("chromium"),
                                 reason="Chromium not installed (apt-get install chromium)")
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
if "KHRBM_DATA_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["KHRBM_DATA_DIR"] = str(SHARED_DATA)

# Tests never write to the user's run registry: every khrbm process they start records into this one.
os.environ["KHRBM_REGISTRY"] = str(Path(tempfile.mkdtemp(prefix="khrbm-test-registry-")) / "registry.sqlite")

HOW_TO_GET_MNIST = ("real MNIST not found: run `khrbm data fetch mnist` (needs internet once) or set "
                    "KHRBM_DATA_DIR to a folder holding its IDX files")


def real_mnist_or_skip() -> Path:
    """The folder real MNIST is read from; skip (or, in CI, fail) the calling test when there is none."""
    from khrbm import data

    try:
        directory, _files = data.locate("mnist")
        return directory
    except data.DataError as err:
        if os.environ.get("KHRBM_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"KHRBM_REQUIRE_REAL_DATA=1 but {HOW_TO_GET_MNIST} ({str(err)[:300]})")
        pytest.skip(HOW_TO_GET_MNIST)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    return real_mnist_or_skip()


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate a server a test started; kill it if it does not end within 15 s."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def trainers():
    """Make Trainers (``trainers(config_a, ...)``); all closed afterwards even if the test fails."""
    from khrbm.train.trainer import Trainer

    made = []

    def make(*args, **kw):
        t = Trainer(*args, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


# --- the app in a browser --------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def panel_serve(target: str, log_name: str, env=None, page=None):
    """`panel serve TARGET` on a free port; yields (url of ``page``, path of its log)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))      # KHRBM_DATA_DIR from conftest, if any
    log_path = ARTIFACTS / log_name
    page = page or Path(target).stem
    with open(log_path, "w") as log:
        cmd = [sys.executable, "-m", "panel", "serve", target, "--port", str(port), "--address", "127.0.0.1",
               "--allow-websocket-origin", f"127.0.0.1:{port}",
               # discard a closed tab's session within ~1 s instead of the default ~15-30 s
               "--check-unused-sessions", "500", "--unused-session-lifetime", "500"]
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # a static file: answers once the server is up, without building a session
            probe = f"http://127.0.0.1:{port}/static/extensions/panel/css/loading.css"
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(probe, timeout=2)
                    break
                except OSError:
                    if time.time() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"panel serve {target} did not start:\n{log_path.read_text()}")
                    time.sleep(0.3)
            yield f"http://127.0.0.1:{port}/{page}", log_path
        finally:
            stop_process(proc)


@pytest.fixture(scope="session")
def khrbm_app_server():
    """`panel serve app` on a free port, shared by the browser tests; yields (url, path of its log). It
    inherits this process's environment: KHRBM_DATA_DIR and the tests' KHRBM_REGISTRY."""
    with panel_serve("app", "server.log") as served:
        yield served


@pytest.fixture(scope="session")
def khrbm_browser():
    """Headless Chromium (Debian's), driven by Playwright."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        yield browser
        browser.close()


class Tab:
    """One browser tab on the app, with the console errors it logged."""

    def __init__(self, browser, url, ready=("idle", "paused")):
        """Open ``url``; wait until the run is in a state of ``ready`` (None: do not wait)."""
        self.context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"{time.strftime('%X')} {m.text}")
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.page.on("requestfailed",
                     lambda r: self.errors.append(f"{time.strftime('%X')} request failed: {r.url[:200]}"))
        self.page.goto(url)
        if ready:
            self.wait_attr("state", lambda v: v in ready, timeout=120)

    # the status line exposes its numbers as data attributes
    def attr(self, name: str) -> str:
        return self.page.locator(".khrbm-statusline").first.get_attribute(f"data-{name}") or ""

    def step(self) -> int:
        return int(self.attr("step") or 0)

    def wait_attr(self, name, pred, timeout=60.0):
        deadline = time.time() + timeout
        value = None
        while time.time() < deadline:
            try:
                value = self.attr(name)
                if pred(value):
                    return value
            except Exception:  # noqa: BLE001 - the element may be re-rendered
                pass
            time.sleep(0.2)
        raise AssertionError(f"data-{name} stayed {value!r} for {timeout} s; status: {self.status_text()}")

    def status_text(self) -> str:
        try:
            return self.page.locator(".khrbm-statusline").first.inner_text()
        except Exception:  # noqa: BLE001
            return "?"

    def click(self, css: str):
        self.page.mouse.move(700, 20)      # as a hand leaves a button: its tooltip (description) goes away
        self.page.locator(f"{css} button").first.click()

    def set_number(self, field: str, value):
        box = self.page.locator(f".khrbm-w-{field} input").first
        box.fill(str(value))
        box.press("Enter")

    def radio(self, field: str, label: str):
        self.page.locator(f".khrbm-w-{field} button", has_text=label).first.click()

    def preset(self, name: str):
        self.page.locator(".khrbm-preset select").first.select_option(label=name)

    def mark(self, what):
        self.errors.append(f"{time.strftime('%X')} MARK {what}")

    def shot(self, name: str):
        self.page.mouse.move(700, 20)      # no tooltip in the picture
        time.sleep(0.3)
        self.page.screenshot(path=str(ARTIFACTS / name))

    def text(self, css: str) -> str:
        """Text of the first element matching ``css``, including its shadow DOM."""
        loc = self.page.locator(css).first
        if loc.count() == 0:
            return ""
        return loc.evaluate("e => (e.shadowRoot ? e.shadowRoot.textContent : '') + e.textContent")

    def wait_text(self, css: str, needle: str, timeout=20.0) -> str:
        deadline = time.time() + timeout
        text = ""
        while time.time() < deadline:
            text = self.text(css)
            if needle in text:
                return text
            time.sleep(0.2)
        raise AssertionError(f"{needle!r} not in {css}: {text!r}")

    def curves_in_order(self) -> list[str]:
        """The browser's copy of every curve (a data source with columns x and y): problems, if any x steps
        back (points sent twice, or out of order)."""
        return self.page.evaluate("""() => {
            const bad = [];
            for (const doc of window.Bokeh.documents) {
                for (const m of doc.all_models) {
                    if (!m.get_column || !m.columns) continue;
                    const cols = m.columns();
                    if (cols.length !== 2 || !cols.includes("x") || !cols.includes("y")) continue;
                    const x = Array.from(m.get_column("x"));
                    for (let i = 1; i < x.length; i++) {
                        if (!(x[i] > x[i - 1])) { bad.push(`${m.id}: x[${i}] = ${x[i]} after ${x[i - 1]}`); break; }
                    }
                }
            }
            return bad;
        }""")

    def upload(self, path):
        self.page.locator(".khrbm-load input[type=file]").first.set_input_files(str(path))

    def download(self, css: str) -> bytes:
        with self.page.expect_download(timeout=30000) as info:
            self.page.locator(f"{css} button, {css} a").first.click()
        return Path(info.value.path()).read_bytes()

    def close(self):
        self.context.close()


def console_errors(tab) -> list[str]:
    """The console errors a tab logged (a missing favicon and the test's own marks aside)."""
    return [e for e in tab.errors if "favicon" not in e and "MARK" not in e]
