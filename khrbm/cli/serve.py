"""``khrbm serve``: the lab (the same app as `panel serve app`) at http://ADDRESS:PORT/app.

By default it listens on 127.0.0.1 only. A classroom on a LAN is an explicit choice: ``--address 0.0.0.0``
(or the machine's LAN address) and ``--allow-websocket-origin HOST:PORT`` for the name students type.
``--max-trainers`` caps the tabs that train at once (the others queue, or follow a shared run) and
``--idle-release`` frees the trainer of a tab left idle (`panel serve app` reads KHRBM_MAX_TRAINERS and
KHRBM_IDLE_SECONDS instead).
"""
from __future__ import annotations

from .common import fail

DEFAULT_PORT = 5006


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve the lab in the browser (default: this machine only)",
                       description=__doc__)
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on [default: 127.0.0.1, this machine only; 0.0.0.0: every interface]")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port [default: {DEFAULT_PORT}; 0: any free port]")
    p.add_argument("--allow-websocket-origin", action="append", default=[], metavar="HOST[:PORT]",
                   help="a host the students' browsers use to reach the server (repeatable), e.g. 192.168.1.20:5006; "
                        "localhost and 127.0.0.1 on the port are always allowed")
    p.add_argument("--max-trainers", type=int, default=None, metavar="N",
                   help="at most N tabs train at once; the others queue or follow a shared run [default: "
                        "$KHRBM_MAX_TRAINERS, else the number of cores]")
    p.add_argument("--idle-release", type=float, default=None, metavar="SECONDS",
                   help="a tab not training (or with no browser) for this long gives its trainer back, restored "
                        "when the person returns; 0: never [default: $KHRBM_IDLE_SECONDS, else 900]")
    p.add_argument("--show", action="store_true", help="open the app in a browser")
    p.set_defaults(handler=run)


def origins(port: int, extra: list[str]) -> list[str]:
    """The websocket origins the server accepts: this machine on ``port``, plus every ``extra`` one."""
    return list(dict.fromkeys([f"localhost:{port}", f"127.0.0.1:{port}", *extra]))


def run(args) -> int:
    if not 0 <= args.port <= 65535:
        return fail(f"--port must be in [0, 65535], got {args.port}")
    if args.max_trainers is not None and args.max_trainers < 1:
        return fail(f"--max-trainers must be at least 1, got {args.max_trainers}")
    if args.idle_release is not None and not args.idle_release >= 0:
        return fail(f"--idle-release must be a number of seconds >= 0, got {args.idle_release}")
    import panel as pn

    from ..app import capacity, files
    from ..app.lab import build

    capacity.configure(max_trainers=args.max_trainers, idle_seconds=args.idle_release)

    try:
        server = pn.serve({"app": build}, port=args.port, address=args.address, show=False, start=False,
                          verbose=False, title="khrbm lab",
                          websocket_origin=origins(args.port, args.allow_websocket_origin),
                          websocket_max_message_size=files.WEBSOCKET_MAX_MESSAGE_BYTES)
    except OSError as exc:
        return fail(f"cannot listen on {args.address}:{args.port}: {exc.strerror or exc}")
    url = f"http://{'localhost' if args.address in ('127.0.0.1', 'localhost') else args.address}:{server.port}/app"
    idle = capacity.idle_seconds()
    print(f"khrbm lab at {url}  (at most {capacity.SLOTS.max_trainers} training at once; idle trainers released "
          f"after {f'{idle:g} s' if idle else 'never'}; Ctrl-C stops it)", flush=True)
    if args.show:
        server.io_loop.add_callback(server.show, "/app")
    try:
        server.start()
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
