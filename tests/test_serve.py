"""`khrbm serve`: the lab on 127.0.0.1 by default, refusing a websocket from a foreign origin."""
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import stop_process

from khrbm.cli import build_parser, main
from khrbm.cli.serve import origins

REPO = Path(__file__).resolve().parents[1]


def test_serve_defaults_to_this_machine_only():
    args = build_parser().parse_args(["serve"])
    assert args.address == "127.0.0.1" and not args.show
    lan = build_parser().parse_args(["serve", "--address", "0.0.0.0", "--port", "8000",
                                     "--allow-websocket-origin", "192.168.1.20:8000"])
    assert origins(lan.port, lan.allow_websocket_origin) == ["localhost:8000", "127.0.0.1:8000", "192.168.1.20:8000"]


def test_serve_refuses_a_cap_below_one(capsys):
    assert main(["serve", "--max-trainers", "0"]) == 2
    assert main(["serve", "--idle-release", "-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--max-trainers must be at least 1" in err[0] and "--idle-release" in err[1]


@pytest.mark.timeout(120)
def test_khrbm_serve_answers_and_refuses_a_forged_origin():
    tornado_ws = pytest.importorskip("tornado.websocket")
    from tornado.httpclient import HTTPClientError, HTTPRequest

    proc = subprocess.Popen([sys.executable, "-m", "khrbm", "serve", "--port", "0", "--max-trainers", "3",
                             "--idle-release", "60"], cwd=REPO,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://localhost:(\d+)/app", line)
        assert match, line
        assert "at most 3 training at once; idle trainers released after 60 s" in line
        port = int(match.group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/app", timeout=60) as r:
            page = r.read().decode()
        assert r.status == 200 and "khrbm" in page

        def connect(origin) -> int:
            """Open (and close) the app's websocket with this Origin: the HTTP status, 101 when let in. On a
            thread and event loop of its own: the browser tests' Playwright may hold this thread's loop."""
            async def attempt():
                req = HTTPRequest(f"ws://127.0.0.1:{port}/app/ws", headers={"Origin": origin})
                try:
                    (await asyncio.wait_for(tornado_ws.websocket_connect(req), 20)).close()
                    return 101
                except HTTPClientError as exc:
                    return exc.code
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(asyncio.run, attempt()).result()

        assert connect("http://evil.example") == 403
        assert connect(f"http://127.0.0.1:{port}") == 101          # this machine's own page is let in
    finally:
        stop_process(proc)
