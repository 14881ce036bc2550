"""The ``dm-bridge`` command: serve a backend, make CurveZMQ keys, run a demo round.

Examples::

    dm-bridge serve --backend twin                       # loopback, port 5555, no keys:
                                                         # stream://127.0.0.1:5555
    dm-bridge serve --backend twin --transport zmq       # the same over ZeroMQ (tcp://)
    dm-bridge serve --backend minimal --port 0           # any free port (printed)
    dm-bridge keys --out keys/ --clients 2
    dm-bridge serve --backend dm --host 0.0.0.0 \\
        --server-key keys/server.key_secret --allowed-clients keys/clients/
    dm-bridge demo                                        # a bridge and a round of calls

Backend options (``--time-scale``, ``--max-exposure``, and each backend's own) come from the
chosen backend class's ``add_arguments``; only that backend's module is imported.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .backends import BACKENDS
from .server import (
    DEFAULT_MAX_REPLY_BYTES,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT,
    DEFAULT_QUEUE_LIMIT,
    TRANSPORTS,
)

__all__ = ["main"]

log = logging.getLogger("dm_bridge.cli")


def _backend_class(name: str) -> Any:
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemExit(
            f"dm-bridge: the {name!r} backend cannot be loaded ({exc}); "
            "install its extra, e.g. pip install 'ophyd-stem[twin]'"
        ) from None
    return getattr(module, class_name)


def _serve_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "serve",
        help="serve a backend (plain TCP on loopback, ZeroMQ with CurveZMQ off it)",
        description="Serve one instrument. Logs start, stop, errors and aborts at "
        "info level, and each request (command, id, outcome, milliseconds) at debug level.",
    )
    p.add_argument("--backend", required=True, choices=sorted(BACKENDS), help="instrument")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port; 0 = any free one")
    p.add_argument("--server-key", help="server .key_secret file (turns CurveZMQ on)")
    p.add_argument("--allowed-clients", help="folder of allowed client public .key files")
    p.add_argument(
        "--insecure-keys",
        action="store_true",
        help="start even if other users can read the secret key or change the allow-list "
        "(logged as an error)",
    )
    p.add_argument(
        "--transport",
        choices=["auto", *TRANSPORTS],
        default=None,
        help="stream: plain TCP, length-framed (fastest; loopback only, no keys); zmq: ZeroMQ "
        "(CurveZMQ with --server-key, required off loopback); auto (the default, or "
        "$DM_BRIDGE_TRANSPORT): stream on loopback without keys, zmq otherwise. The printed "
        "address names it: stream://... or tcp://...",
    )
    p.add_argument("--queue-limit", type=int, default=DEFAULT_QUEUE_LIMIT)
    p.add_argument(
        "--max-request-mb",
        type=float,
        default=DEFAULT_MAX_REQUEST_BYTES / 2**20,
        help="largest request (header and frames), MiB; larger ones get too_large",
    )
    p.add_argument(
        "--max-reply-mb",
        type=float,
        default=DEFAULT_MAX_REPLY_BYTES / 2**20,
        help="memory the server may hold for one reply, MiB; acquisitions whose reply would "
        "be larger get too_large before they start",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def _keys_parser(sub: Any) -> None:
    p = sub.add_parser(
        "keys",
        help="make CurveZMQ key pairs",
        description="Write a server key pair (if absent) and N new client key pairs; "
        "never overwrites.",
    )
    p.add_argument("--out", required=True, help="folder to write the keys to")
    p.add_argument("--clients", type=int, default=1, help="number of new client key pairs")


def _demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="serve a bridge on loopback and make a round of calls")
    p.add_argument("--backend", choices=["twin", "minimal"], help="default: twin if installed")
    p.add_argument("--points", type=int, default=64, help="spectra in the point acquisition")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``dm-bridge`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="dm-bridge", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    serve = _serve_parser(sub)
    _keys_parser(sub)
    _demo_parser(sub)
    # The chosen backend adds its own options (also to --help), so look for it first.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("action", nargs="?")
    pre.add_argument("--backend")
    early, _ = pre.parse_known_args(argv)
    backend_cls = None
    if early.action == "serve" and early.backend in BACKENDS:
        backend_cls = _backend_class(early.backend)
        backend_cls.add_arguments(serve.add_argument_group(f"{early.backend} backend options"))
    args = parser.parse_args(argv)
    if args.action == "serve":
        return _serve(args, backend_cls)
    if args.action == "keys":
        return _keys(args)
    return _demo(args)


def _serve(args: argparse.Namespace, backend_cls: Any) -> int:
    from .server import Server

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        backend = backend_cls(**backend_cls.options_from_arguments(args))
    except (ImportError, ValueError, OSError) as exc:
        # e.g. --backend dm outside DigitalMicrograph, a missing replay file, a bad option
        print(f"dm-bridge: cannot start the {args.backend} backend: {exc}", file=sys.stderr)
        return 2
    try:
        server = Server(
            backend,
            host=args.host,
            port=args.port,
            server_secret_key=args.server_key,
            allowed_clients=args.allowed_clients,
            queue_limit=args.queue_limit,
            max_request_bytes=int(args.max_request_mb * 2**20),
            max_reply_bytes=int(args.max_reply_mb * 2**20),
            insecure_keys=args.insecure_keys,
            transport=args.transport,
        )
    except (ValueError, OSError) as exc:
        backend.close()
        print(f"dm-bridge: {exc}", file=sys.stderr)
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: server.stop(timeout=0))
    try:
        # One machine-readable line on stdout once bound: scripts and tests read the port.
        server.serve_forever(on_ready=_announce)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a bind failure, typically
        print(f"dm-bridge: cannot serve: {exc}", file=sys.stderr)
        return 1
    finally:
        backend.close()
    return 0


def _announce(server: Any) -> None:
    print(f"dm-bridge: serving {server.backend.kind} at {server.endpoint}", flush=True)


def _keys(args: argparse.Namespace) -> int:
    from .keys import generate_keys

    if args.clients < 0:
        print("dm-bridge: --clients must be >= 0", file=sys.stderr)
        return 2
    paths = generate_keys(args.out, clients=args.clients)
    print(f"server public key (give to clients):   {paths['server_public']}")
    print(f"server secret key (microscope PC only): {paths['server_secret']}")
    print(f"allowed clients folder (--allowed-clients): {paths['allowed_clients']}")
    for client in paths["clients"]:
        print(f"client key pair (give to that client):  {client['secret']}")
    return 0


# ------------------------------------------------------------------------------------ demo


def _demo_backend(choice: Optional[str]) -> Tuple[str, Any]:
    names = [choice] if choice else ["twin", "minimal"]
    for name in names:
        module_name, class_name = BACKENDS[name]
        try:
            return name, getattr(importlib.import_module(module_name), class_name)()
        except Exception as exc:  # missing extra, or a backend not finished yet: fall back
            if choice:
                raise SystemExit(f"dm-bridge: the {name!r} backend is unavailable: {exc}") from None
            print(f"dm-bridge demo: {name} backend unavailable ({exc}); trying the next one")
    raise SystemExit("dm-bridge: no backend available")  # minimal always imports


def _demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .client import BridgeClient
    from .server import Server

    name, backend = _demo_backend(args.backend)
    rows: List[Tuple[str, float, str]] = []

    def timed(label: str, call: Callable[[], Any], describe: Callable[[Any], str]) -> Any:
        start = time.perf_counter()
        value = call()
        rows.append((label, time.perf_counter() - start, describe(value)))
        return value

    with Server(backend, port=0) as server, BridgeClient(server.endpoint) as dm:
        info = timed(
            "hello", dm.hello, lambda h: f"{h['backend']} backend, protocol {h['protocol']}"
        )
        scan = timed(
            "set_scan_parameters",
            lambda: dm.set_scan_parameters(width=256, height=256, dwell_time=4e-6),
            lambda s: f"{s['width']}x{s['height']} px, {s['dwell_time'] * 1e6:g} µs dwell",
        )
        image = timed(
            "acquire_image",
            dm.acquire_image,
            lambda a: (
                ", ".join(f"{k} {v.shape} {v.dtype}" for k, v in a.images.items())
                + f", {a.pixel_size:.4g} {a.units}/px, {a.instrument_time:.3g} s on the microscope"
            ),
        )
        survey = next(iter(image.images.values()))
        y, x = np.unravel_index(int(np.argmax(survey)), survey.shape)
        timed(
            "set_beam_position",
            lambda: dm.set_beam_position(float(x), float(y)),
            lambda p: f"beam at ({p[0]:g}, {p[1]:g}) px (brightest pixel)",
        )
        rng = np.random.default_rng(0)
        points = rng.uniform(0, scan["width"] - 1, size=(args.points, 2))
        timed(
            "acquire_spectra_at_points",
            lambda: dm.acquire_spectra_at_points(points),
            lambda s: (
                f"{s.spectra.shape} spectra, {s.energy_axis[0]:g}..{s.energy_axis[-1]:g} "
                f"eV, {s.instrument_time:.3g} s on the microscope"
            ),
        )
        timed("status", dm.status, lambda s: f"{s['state']}, last error {s['last_error']}")
    print(f"dm-bridge demo: {info['instrument'].get('name', name)} at {server.endpoint}")
    width = max(len(r[0]) for r in rows)
    for label, seconds, summary in rows:
        print(f"  {label:<{width}}  {seconds * 1e3:8.2f} ms  {summary}")
    print("bridge stopped cleanly")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
