"""What ``benchmarks/bridge.py`` measures the bridge against, and the instrument behind all.

* :class:`PreparedBackend`: the minimal instrument with its arrays made once, behind every
  server, so that the table measures the transport and not the instrument;
* :class:`LegacyServer`: the existing DM server's way (Pyro5, one call per action, arrays
  sent as ``array.tolist()``);
* the *floors*: bare echo servers (a pyzmq ROUTER and a blocking TCP socket, Pyro5's kind of
  transport) and their clients, the least any server in Python can do per call.

Imported by ``benchmarks/bridge.py`` (run as a script: this folder is on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Dict, Iterator, List, Tuple

import numpy as np
import Pyro5.api
import zmq

from dm_bridge.backends.base import (
    EELSParameters,
    ImageAcquisition,
    ScanParameters,
    SpectrumAcquisition,
    energy_axis,
)
from dm_bridge.backends.minimal import MinimalBackend


class PreparedBackend(MinimalBackend):
    """The minimal instrument with its arrays made once, so only the transport is timed."""

    def __init__(self) -> None:
        super().__init__(time_scale=0.0)
        self._images: Dict[Tuple[int, int], ImageAcquisition] = {}

    def _do_acquire_image(self, scan: ScanParameters) -> ImageAcquisition:
        key = (scan.width, scan.height)
        if key not in self._images:
            self._images[key] = super()._do_acquire_image(scan)
        return self._images[key]

    def _do_acquire_spectra_at_points(
        self, eels: EELSParameters, points: np.ndarray
    ) -> SpectrumAcquisition:
        axis = energy_axis(eels)
        height = 1000.0 + 10.0 * points[:, 0] + points[:, 1]
        spectra = (height[:, None] * np.exp(-0.5 * axis**2)[None, :]).astype(np.float32)
        return SpectrumAcquisition(spectra, axis, instrument_time=len(points) * eels.exposure)


@Pyro5.api.expose
class LegacyServer:
    """What the existing DM server offers, its way: one call per action, arrays as lists."""

    def __init__(self, backend: PreparedBackend) -> None:
        self.backend = backend

    def get_beam_position(self) -> List[float]:
        return list(self.backend.get_beam_position())

    def set_beam_position(self, x: float, y: float) -> None:
        self.backend.set_beam_position(x, y)

    def set_image_size(self, width: int, height: int) -> None:
        self.backend.set_scan_parameters(width=width, height=height)

    def acquire_image(self) -> list:
        return self.backend.acquire_image().images["HAADF"].tolist()

    def acquire_spectrum(self) -> list:
        return self.backend.acquire_spectrum().spectra.tolist()


# ------------------------------------------------------------------------------ floors
#: what the echo servers send back for a request of this text: a 128² float32 image
IMAGE_REQUEST = b"IMAGE"
_IMAGE_BYTES = np.zeros(128 * 128, np.float32).tobytes()


def zmq_echo(router: zmq.Socket, stop: threading.Event) -> None:
    """A bare ROUTER that sends each message back (or an image for IMAGE_REQUEST): the
    least any ZeroMQ server in Python can do per call."""
    items = [(router, zmq.POLLIN)]
    while not stop.is_set():
        if zmq.zmq_poll(items, 100):
            parts = router.recv_multipart(copy=False)
            if parts[-1].bytes == IMAGE_REQUEST:
                parts = [parts[0], b"", b"{}", _IMAGE_BYTES]
            router.send_multipart(parts, copy=False)


def socket_echo(listener: socket.socket) -> None:
    """A bare TCP server (one blocking socket per client, like Pyro5's) that sends each
    message back (or an image, length-prefixed, for IMAGE_REQUEST)."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=_echo_connection, args=(conn,), daemon=True).start()


def _echo_connection(conn: socket.socket) -> None:
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            if data == IMAGE_REQUEST:
                conn.sendall(len(_IMAGE_BYTES).to_bytes(8, "little") + _IMAGE_BYTES)
            else:
                conn.sendall(data)


class FloorClients:
    """Clients of the two echo servers: ``zmq_call``/``socket_call`` send one small header
    and wait for it back; ``zmq_image``/``socket_image`` get a 128² float32 image."""

    HEADER = b'{"protocol":1,"id":1,"command":"get_beam_position","args":{},"timeout":120.0}'

    def __init__(self, zmq_endpoint: str, socket_port: int) -> None:
        self.dealer = zmq.Context.instance().socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(zmq_endpoint)
        self.sock = socket.create_connection(("127.0.0.1", socket_port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._items = [(self.dealer, zmq.POLLIN)]

    def zmq_call(self, payload: bytes = HEADER) -> List[Any]:
        self.dealer.send_multipart([b"", payload])
        zmq.zmq_poll(self._items, 120_000)
        return self.dealer.recv_multipart(copy=False)

    def zmq_image(self) -> np.ndarray:
        return np.frombuffer(self.zmq_call(IMAGE_REQUEST)[2], np.float32)

    def socket_call(self) -> bytes:
        self.sock.sendall(self.HEADER)
        return self.sock.recv(65536)

    def socket_image(self) -> np.ndarray:
        self.sock.sendall(IMAGE_REQUEST)
        data = bytearray()
        while len(data) < 8 or len(data) < 8 + int.from_bytes(data[:8], "little"):
            data += self.sock.recv(1 << 20)
        return np.frombuffer(data, np.float32, offset=8)

    def close(self) -> None:
        self.dealer.close()
        self.sock.close()


@contextlib.contextmanager
def floors_in_process() -> Iterator[Tuple[str, int]]:
    """Both echo servers in background threads: (ZeroMQ endpoint, TCP port)."""
    stop = threading.Event()
    router = zmq.Context.instance().socket(zmq.ROUTER)
    endpoint = f"tcp://127.0.0.1:{router.bind_to_random_port('tcp://127.0.0.1')}"
    listener = socket.create_server(("127.0.0.1", 0))
    threads = [
        threading.Thread(target=zmq_echo, args=(router, stop), daemon=True),
        threading.Thread(target=socket_echo, args=(listener,), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield endpoint, listener.getsockname()[1]
    finally:
        stop.set()
        threads[0].join(5)
        router.close(0)
        listener.close()
