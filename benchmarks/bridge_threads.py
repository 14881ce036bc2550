"""Where the thread hand-offs go: three layouts of a ZeroMQ server, measured side by side.

Each layout answers the same small JSON request with the same work (parse, answer, encode);
only the threads between the socket and that work differ. This is the measurement behind
``docs/decisions/0009-bridge-instrument-thread-owns-the-socket.md``:

* **I/O thread + doorbell** (the bridge until issue 16): a Python I/O thread owns the ROUTER
  socket, queues the request and rings a doorbell (``queue.SimpleQueue``); the instrument
  thread does the work and hands the reply back over an ``inproc`` PUSH/PULL pair;
* **instrument thread owns the socket** (the bridge now): the thread that does the work
  polls the socket itself; another thread would take the socket only while a command runs
  long (a lock says who holds it, so the fast path costs one uncontended lock release and
  acquire);
* **libzmq proxy**: ``zmq.proxy_steerable`` (C, no GIL) forwards between the TCP ROUTER and
  an ``inproc`` socket that the instrument thread polls;
* **plain TCP, no ZeroMQ**: the instrument thread itself selects over a listening socket and
  its clients' sockets, and frames each message with its length: what a bridge without
  libzmq's I/O threads (two hand-offs fewer per call) could do, measured to decide whether
  the transport is worth replacing (issue 16: small calls at least as fast as Pyro5);
* **Pyro5** (reference, when installed): the server the bridge replaces, answering the same
  work from its worker thread.

Run::

    python benchmarks/bridge_threads.py            # 3 rounds of 3000 calls per layout
    python benchmarks/bridge_threads.py --calls 500
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import selectors
import socket
import statistics
import struct
import threading
import time
from collections import deque
from typing import Any, Dict, List

import zmq


def work(header: bytes) -> bytes:
    request = json.loads(header)
    reply = {"protocol": 1, "id": request["id"], "ok": True, "result": {"x": 1.0, "y": 2.0}}
    return json.dumps(reply).encode()


class DoorbellLayout:
    name = "I/O thread + doorbell + inproc (before)"

    def __init__(self, context: zmq.Context) -> None:
        self.context, self.stop = context, threading.Event()
        self.jobs: deque = deque()
        self.bell: queue.SimpleQueue = queue.SimpleQueue()
        self.ready = threading.Event()
        self.pipe = f"inproc://doorbell-{id(self):x}"
        self.threads = [threading.Thread(target=self.io, daemon=True)]
        self.threads[0].start()
        self.ready.wait()
        self.threads.append(threading.Thread(target=self.instrument, daemon=True))
        self.threads[1].start()

    def io(self) -> None:
        router = self.context.socket(zmq.ROUTER)
        router.bind("tcp://127.0.0.1:*")
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        pull = self.context.socket(zmq.PULL)
        pull.bind(self.pipe)
        self.ready.set()
        items = [(router, zmq.POLLIN), (pull, zmq.POLLIN)]
        while not self.stop.is_set():
            for sock, _ in zmq.zmq_poll(items, 100):
                if sock is pull:
                    router.send_multipart(pull.recv_multipart())
                else:
                    self.jobs.append(router.recv_multipart())
                    self.bell.put(True)
        router.close(0)
        pull.close(0)

    def instrument(self) -> None:
        push = self.context.socket(zmq.PUSH)
        push.connect(self.pipe)
        while not self.stop.is_set():
            try:
                self.bell.get(timeout=0.1)
            except queue.Empty:
                continue
            while self.jobs:
                parts = self.jobs.popleft()
                push.send_multipart([parts[0], b"", work(parts[2])])
        push.close(0)

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


class OwnerLayout:
    name = "instrument thread owns the socket (now)"

    def __init__(self, context: zmq.Context) -> None:
        self.context, self.stop, self.ready = context, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self.instrument, daemon=True)
        self.thread.start()
        self.ready.wait()

    def instrument(self) -> None:
        router = self.context.socket(zmq.ROUTER)
        router.bind("tcp://127.0.0.1:*")
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        baton = threading.Lock()
        baton.acquire()
        self.ready.set()
        items = [(router, zmq.POLLIN)]
        while not self.stop.is_set():
            if zmq.zmq_poll(items, 100):
                parts = router.recv_multipart()
                baton.release()  # away: the standby thread may take the socket meanwhile
                reply = work(parts[2])
                baton.acquire()
                router.send_multipart([parts[0], b"", reply])
        router.close(0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class ProxyLayout:
    name = "libzmq proxy (C) + instrument thread on inproc"

    def __init__(self, context: zmq.Context) -> None:
        self.context, self.stop, self.ready = context, threading.Event(), threading.Event()
        tag = f"{id(self):x}"
        front = context.socket(zmq.ROUTER)
        front.bind("tcp://127.0.0.1:*")
        self.endpoint = front.getsockopt_string(zmq.LAST_ENDPOINT)
        back = context.socket(zmq.DEALER)
        back.bind(f"inproc://back-{tag}")
        control = context.socket(zmq.PAIR)
        control.bind(f"inproc://control-{tag}")
        self.control = context.socket(zmq.PAIR)
        self.control.connect(f"inproc://control-{tag}")

        def proxy() -> None:
            zmq.proxy_steerable(front, back, None, control)
            for sock in (front, back, control):
                sock.close(0)

        self.threads = [threading.Thread(target=proxy, daemon=True)]
        self.threads.append(threading.Thread(target=self.instrument, args=(tag,), daemon=True))
        for t in self.threads:
            t.start()
        self.ready.wait()

    def instrument(self, tag: str) -> None:
        worker = self.context.socket(zmq.ROUTER)
        worker.connect(f"inproc://back-{tag}")
        self.ready.set()
        while not self.stop.is_set():
            if worker.poll(100):
                parts = worker.recv_multipart()  # [proxy id, client id, "", header]
                worker.send_multipart([*parts[:3], work(parts[3])])
        worker.close(0)

    def close(self) -> None:
        self.stop.set()
        self.threads[1].join(5)
        self.control.send(b"TERMINATE")
        self.threads[0].join(5)
        self.control.close(0)


LENGTH = struct.Struct("!I")  # a message on plain TCP: its length, then its bytes


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("peer closed")
        data += chunk
    return bytes(data)


def receive_message(sock: socket.socket) -> bytes:
    (size,) = LENGTH.unpack(receive_exactly(sock, LENGTH.size))
    return receive_exactly(sock, size)


def send_message(sock: socket.socket, data: bytes) -> None:
    sock.sendall(LENGTH.pack(len(data)) + data)


class PlainTCPLayout:
    name = "plain TCP, instrument thread selects (no ZeroMQ)"

    def __init__(self, context: zmq.Context) -> None:
        self.stop, self.ready = threading.Event(), threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = self.listener.getsockname()
        self.thread = threading.Thread(target=self.instrument, daemon=True)
        self.thread.start()
        self.ready.wait()

    def instrument(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        self.ready.set()
        while not self.stop.is_set():
            for key, _ in selector.select(0.1):
                if key.fileobj is self.listener:
                    peer, _ = self.listener.accept()
                    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    selector.register(peer, selectors.EVENT_READ)
                    continue
                peer = key.fileobj
                try:
                    send_message(peer, work(receive_message(peer)))
                except ConnectionError:
                    selector.unregister(peer)
                    peer.close()
        for key in list(selector.get_map().values()):
            key.fileobj.close()
        selector.close()

    def client(self) -> Any:
        sock = socket.create_connection(self.endpoint)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def call(request: bytes) -> bytes:
            send_message(sock, request)
            return receive_message(sock)

        return call, sock.close

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


class PyroLayout:
    name = "Pyro5 (the server the bridge replaces; reference)"

    def __init__(self, context: zmq.Context) -> None:
        import Pyro5.api

        @Pyro5.api.expose
        class Instrument:
            def call(self, request: str) -> str:
                return work(request.encode()).decode()

        self.daemon = Pyro5.api.Daemon(host="127.0.0.1")
        self.uri = self.daemon.register(Instrument())
        self.thread = threading.Thread(target=self.daemon.requestLoop, daemon=True)
        self.thread.start()

    def client(self) -> Any:
        import Pyro5.api

        proxy = Pyro5.api.Proxy(self.uri)
        return (lambda request: proxy.call(request.decode()).encode()), proxy._pyroRelease

    def close(self) -> None:
        self.daemon.shutdown()
        self.thread.join(5)
        self.daemon.close()


def zmq_client(context: zmq.Context, server: Any) -> Any:
    dealer = context.socket(zmq.DEALER)
    dealer.connect(server.endpoint)

    def call(request: bytes) -> bytes:
        dealer.send_multipart([b"", request])
        if not dealer.poll(5000):
            raise TimeoutError(f"{server.name}: no reply")
        return dealer.recv_multipart()[-1]

    return call, lambda: dealer.close(0)


def pyro_installed() -> bool:
    try:
        import Pyro5  # noqa: F401
    except ImportError:
        return False
    return True


LAYOUTS = (DoorbellLayout, OwnerLayout, ProxyLayout, PlainTCPLayout) + (
    (PyroLayout,) if pyro_installed() else ()
)


def one_round(layout: Any, calls: int) -> Dict[str, float]:
    context = zmq.Context.instance()
    server = layout(context)
    call, close = server.client() if hasattr(server, "client") else zmq_client(context, server)
    samples: List[float] = []
    try:
        cpu = time.process_time()
        for i in range(calls + 200):
            start = time.perf_counter()
            request = {"protocol": 1, "id": i, "command": "get_beam_position", "args": {}}
            reply = json.loads(call(json.dumps(request).encode()))
            if reply["id"] != i:
                raise RuntimeError(f"{layout.name}: reply {reply['id']} to request {i}")
            if i >= 200:  # after a warm-up
                samples.append(time.perf_counter() - start)
        cpu = (time.process_time() - cpu) / (calls + 200)
    finally:
        close()
        server.close()
    return {"median": statistics.median(samples), "cpu": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per layout and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: Dict[str, List[Dict[str, float]]] = {layout.name: [] for layout in LAYOUTS}
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for _ in range(args.rounds):  # alternating, so that the load falls on all alike
        for layout in LAYOUTS:
            results[layout.name].append(one_round(layout, args.calls))
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"small-call round trip, client in this process, {args.rounds} rounds x {args.calls} "
        f"calls, {os.cpu_count()} cores, load average {load_before:.2f} -> {load_after:.2f}"
    )
    width = max(len(name) for name in results)
    print(f"{'layout':<{width}} | median (rounds)          | CPU per call (median)")
    for name, rounds in results.items():
        medians = ", ".join(f"{r['median'] * 1e6:.0f}" for r in rounds)
        cpu = statistics.median(r["cpu"] for r in rounds) * 1e6
        best = statistics.median(r["median"] for r in rounds) * 1e6
        print(f"{name:<{width}} | {best:5.0f} µs ({medians}) | {cpu:.0f} µs")


if __name__ == "__main__":
    main()
