"""What the blocking and the asyncio bridge clients share: everything but waiting.

Both clients keep a small pool of *channels*: a DEALER socket connected to the server plus a
monitor socket that reports its connection events. A channel carries one request at a time,
so replies never need routing between callers; concurrent calls simply take more channels.
A channel whose call timed out, failed or was cancelled is closed, never reused: its request
may still be queued somewhere, and a stale reply must not reach the next caller. (Replies
whose id does not match are dropped anyway.)

A call during an outage waits in its socket for the server to come back; when it times out,
closing the channel (linger 0) drops the request too, so it never fires minutes later. (Not
``ZMQ_IMMEDIATE``: with it, libzmq discards replies already received when the connection
drops, e.g. the last replies of a server that is shutting down.) A CURVE handshake failure
shows up on the monitor as ``HANDSHAKE_FAILED_*``, which becomes :class:`BridgeAuthError`.

Standard library, numpy and pyzmq only, Python 3.8 syntax.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import zmq
from zmq.utils.monitor import parse_monitor_message

from . import stream
from .commands import acquisition_estimate, image_from_result, spectrum_from_result
from .errors import (
    BadRequest,
    BridgeAuthError,
    BridgeConnectionError,
    BridgeTimeout,
    error_for_kind,
)
from .keys import KeySource, load_key_pair, load_public_key
from .protocol import Reply, decode_reply, encode_request

__all__ = [
    "DEFAULT_TIMEOUT",
    "Channel",
    "ClientCore",
    "points_argument",
    "region_argument",
    "slice_ms",
]

#: seconds a call waits for its reply, before any allowance for acquisition time
DEFAULT_TIMEOUT = 10.0
#: an acquisition's timeout grows by this many times its expected duration (the server's
#: ``hello`` tells the fixed overheads: camera set-up, read-out, line flyback)
INSTRUMENT_TIME_FACTOR = 2.0
#: seconds at most that a call whose scan or EELS settings this client has not seen yet may
#: be given from the instrument's caps (``hello``'s limits: the longest dwell and exposure
#: the operator allows) instead of reading the settings first: a single spectrum on a
#: microscope (10 s cap: ~35 s) goes at once; a long one (an image at the caps, many
#: points) reads them first, so that a hung server is not waited on for hours
UNREAD_SETTINGS_WAIT = 60.0
#: while waiting, look at the connection events this often (seconds)
MONITOR_INTERVAL = 0.1
#: the channels' receive timeout (``ZMQ_RCVTIMEO``, milliseconds): one monitor interval
RECEIVE_SLICE_MS = int(MONITOR_INTERVAL * 1000)

_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
)
_WATCHED = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)


_GUESSED_TIMING = {
    "image_overhead": 1.0,
    "line_overhead": 1e-3,
    "spectrum_overhead": 0.3,
    "acquisition_overhead": 3.0,
    "time_scale": 1.0,
}


def _identity(result: Any) -> Any:
    return result


def _nothing(result: Any) -> None:
    return None


def _position(result: Dict[str, Any]) -> Tuple[float, float]:
    return float(result["x"]), float(result["y"])


#: wire result -> what the client method returns (the same types a backend returns)
CONVERTERS: Dict[str, Callable[[Any], Any]] = {
    "hello": _identity,
    "status": _identity,
    "abort": _nothing,
    "get_scan_parameters": _identity,
    "set_scan_parameters": _identity,
    "acquire_image": image_from_result,
    "get_beam_position": _position,
    "set_beam_position": _position,
    "blank_beam": _nothing,
    "unblank_beam": _nothing,
    "get_eels_parameters": _identity,
    "set_eels_parameters": _identity,
    "acquire_spectrum": spectrum_from_result,
    "acquire_spectra_at_points": spectrum_from_result,
    "acquire_spectrum_image": spectrum_from_result,
    "get_truth": _identity,
}


class Channel:
    """One DEALER socket and its monitor; carries one request at a time.

    Attributes:
        socket: the DEALER socket (``zmq.Socket`` or ``zmq.asyncio.Socket``).
        sync: the same socket with the blocking API.
        monitor: PAIR socket receiving the DEALER's connection events.
        connected: a handshake has succeeded since the last disconnection.
        auth_failure: why the last handshake failed, if the latest attempt failed.
    """

    def __init__(self, socket: Any, monitor: Any) -> None:
        self.socket = socket
        self.monitor = monitor
        #: the same socket with the blocking API (for sends that cannot wait): ``socket``
        #: itself, or a shadow of an asyncio socket (it does not own the socket)
        self.sync = socket if type(socket) is zmq.Socket else zmq.Socket.shadow(socket.underlying)
        self.connected = False
        self.auth_failure: Optional[str] = None

    def on_events(self, messages: List[List[bytes]]) -> None:
        """Update the connection state from a batch of monitor messages, oldest first."""
        for message in messages:
            event = parse_monitor_message(message)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected, self.auth_failure = True, None
            elif event == zmq.EVENT_DISCONNECTED:
                self.connected = False
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self.connected = False
                self.auth_failure = "the server refused this client's key (not in its allow-list)"
            elif event in _FAILED:
                self.connected = False
                self.auth_failure = (
                    "CurveZMQ handshake failed: wrong server public key, or the client's and "
                    "the server's security settings differ (keys on one side only)"
                )

    def close(self) -> None:
        """Close both sockets, dropping anything unsent."""
        with contextlib.suppress(zmq.ZMQError):
            self.socket.disable_monitor()
        self.monitor.close(linger=0)
        self.socket.close(linger=0)


class ClientCore:
    """Request building, reply checking and result conversion, shared by both clients.

    Args:
        address: server endpoint, ``"tcp://host:port"``.
        timeout: default seconds per call (acquisitions get their expected duration on top).
        server_public_key: the server's public key (``server.key`` file or Z85 text); turns
            CurveZMQ on.
        client_secret_key: this client's key pair (``.key_secret`` file or Z85 secret key).
    """

    def __init__(
        self,
        address: str,
        timeout: float,
        server_public_key: Optional[KeySource],
        client_secret_key: Optional[KeySource],
    ) -> None:
        if not isinstance(address, str) or "://" not in address:
            raise ValueError(
                "address must look like 'stream://127.0.0.1:5555' (plain TCP, loopback) or "
                f"'tcp://127.0.0.1:5555' (ZeroMQ), got {address!r}"
            )
        #: ``"stream"`` (``stream://host:port``: plain TCP, length-framed) or ``"zmq"``
        #: (any other scheme, e.g. ``tcp://``: ZeroMQ)
        self.transport = "stream" if address.startswith(stream.SCHEME + "://") else "zmq"
        if self.transport == "stream":
            stream.split_address(address)  # (ValueError if it is not host:port)
            if server_public_key is not None or client_secret_key is not None:
                raise ValueError(
                    "the stream transport has no CurveZMQ: a server with keys speaks ZeroMQ, "
                    "so use its tcp:// address"
                )
        if timeout <= 0:
            raise ValueError("timeout must be > 0 seconds")
        if (server_public_key is None) != (client_secret_key is None):
            raise ValueError(
                "CurveZMQ needs both the server's public key and this client's key pair"
            )
        self.address = address
        self.timeout = float(timeout)
        self.curve: Optional[Tuple[bytes, bytes, bytes]] = None
        if server_public_key is not None and client_secret_key is not None:
            public, secret = load_key_pair(client_secret_key)
            self.curve = (load_public_key(server_public_key), public, secret)
        #: last scan and EELS parameters seen, to size acquisition timeouts
        self.scan: Optional[Dict[str, Any]] = None
        self.eels: Optional[Dict[str, Any]] = None
        #: the backend's overheads and time scale from ``hello`` (sizes acquisition timeouts)
        self.timing: Optional[Dict[str, Any]] = None
        #: the instrument's limits from ``hello`` (the caps bound an unread setting)
        self.limits: Optional[Dict[str, Any]] = None
        #: the server's instance name from the last reply (it changes when the server restarts)
        self.instance: Optional[str] = None
        #: how many times a reply came from a new server instance (a restart) after the first
        self.restarts = 0
        self._ids = itertools.count(1)

    # ---------------------------------------------------------------- sockets

    def open_channel(self, context: zmq.Context) -> Channel:
        """A new DEALER (of ``context``'s flavour) connected to the server, with its monitor."""
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        # A blocking receive waits at most one monitor interval (then the connection events
        # are looked at): one system call per wait, where zmq_poll makes four.
        sock.setsockopt(zmq.RCVTIMEO, RECEIVE_SLICE_MS)
        if self.curve is not None:
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve
        monitor = sock.get_monitor_socket(_WATCHED)
        sock.connect(self.address)
        return Channel(sock, monitor)

    # ---------------------------------------------------------------- requests

    def prerequisite(self, command: str, args: Optional[Dict[str, Any]] = None) -> Optional[str]:
        """The call to make first so that ``command``'s timeout can be sized, or ``None``.

        An acquisition needs ``hello`` once (the overheads, time scale and limits); then the
        settings it depends on (scan for an image, EELS for spectra) only when this client
        has not seen them and the instrument's caps would allow a wait longer than
        :data:`UNREAD_SETTINGS_WAIT`: the first spectrum of a fresh client is sent at once,
        sized for the longest exposure allowed, where it used to wait for a
        ``get_eels_parameters`` first. Ask again after each call made (a reply may be
        from a restarted server, whose settings are unknown again).
        """
        if not command.startswith("acquire_"):
            return None
        if self.timing is None:
            return "hello"
        if command == "acquire_image":
            needed = "get_scan_parameters" if self.scan is None else None
        elif command.startswith("acquire_spectr"):
            needed = "get_eels_parameters" if self.eels is None else None
        else:
            return None
        if needed is None:
            return None
        worst = self._at_the_caps(command, args or {})
        if worst is not None and self.timeout + INSTRUMENT_TIME_FACTOR * worst <= max(
            UNREAD_SETTINGS_WAIT, self.timeout
        ):
            return None
        return needed

    def prerequisites(self, command: str, args: Optional[Dict[str, Any]] = None) -> List[str]:
        """The calls :meth:`prerequisite` asks for now, in order (at most one today)."""
        first = self.prerequisite(command, args)
        return [] if first is None else [first]

    def _caps(self) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        """Scan and EELS settings at the instrument's caps (``hello``'s limits): the longest
        an acquisition can take whatever the settings; ``None`` where the limits do not say."""
        limits = self.limits
        if not isinstance(limits, dict):
            return None, None
        scan: Optional[Dict[str, Any]] = None
        eels: Optional[Dict[str, Any]] = None
        with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
            side = int(limits["image_size"][1])
            scan = {
                "width": side,
                "height": side,
                "dwell_time": float(limits["dwell_time"][1]),
                "signals": list(limits.get("signals") or ()),
            }
        with contextlib.suppress(KeyError, TypeError, ValueError):
            eels = {
                "exposure": float(limits["max_exposure"]),
                "channels": int(limits["sensor_channels"]),
            }
        return scan, eels

    def _at_the_caps(self, command: str, args: Dict[str, Any]) -> Optional[float]:
        """Seconds ``command`` takes at most with the settings not yet seen at their caps,
        or ``None`` if the limits do not tell."""
        scan, eels = self._settings(command)
        if (command == "acquire_image" and scan is None) or (
            command.startswith("acquire_spectr") and eels is None
        ):
            return None
        try:
            return acquisition_estimate(command, args, scan, eels, self.timing)[0]
        except (TypeError, ValueError):
            return None  # (arguments the server will refuse: read the settings as before)

    def _settings(self, command: str) -> Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]:
        """The scan and EELS settings to size ``command``'s wait with: those seen, else the
        caps."""
        if self.scan is not None and self.eels is not None:
            return self.scan, self.eels
        caps = self._caps()
        return (
            self.scan if self.scan is not None else caps[0],
            self.eels if self.eels is not None else caps[1],
        )

    def timeout_for(self, command: str, args: Dict[str, Any], timeout: Optional[float]) -> float:
        """The call's timeout: the explicit one, or the default plus the acquisition's time
        (at the instrument's caps for settings this client has not seen)."""
        if timeout is not None:
            if timeout <= 0:
                raise ValueError("timeout must be > 0 seconds")
            return float(timeout)
        if not command.startswith("acquire_"):
            return self.timeout
        scan, eels = self._settings(command)
        seconds = acquisition_estimate(command, args, scan, eels, self.timing)[0]
        return self.timeout + INSTRUMENT_TIME_FACTOR * seconds

    def request(
        self, command: str, args: Optional[Dict[str, Any]], timeout: float
    ) -> Tuple[int, List[Any]]:
        """A fresh request id and the frames to send (delimiter first)."""
        rid = next(self._ids)
        try:
            return rid, [b"", *encode_request(rid, command, args, timeout)]
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"cannot send the arguments of {command}: {exc}", command) from None

    def match(self, parts: List[Any], rid: int, only: bool = False) -> Optional[Reply]:
        """The reply to request ``rid`` from a received message, or ``None`` if stale.

        ``only``: the connection carried no other request (the stream transport), so an
        error reply without an id (a request the server could not read) is this one's.
        """
        if len(parts) < 2 or len(parts[0]) != 0:
            return None  # not a bridge reply (no delimiter); ignore it
        try:
            reply = decode_reply(parts[1:])
        except BadRequest as exc:
            raise BridgeConnectionError(
                f"malformed reply from {self.address}: {exc.message}"
            ) from None
        if reply.id != rid and not (only and reply.id is None and not reply.ok):
            return None
        instance = reply.instance
        if instance is not None and instance != self.instance:
            if self.instance is not None:
                # A restarted server has its backend's default settings again: what this
                # client knew of them no longer holds.
                self.restarts += 1
                self.scan = self.eels = self.timing = self.limits = None
            self.instance = instance
        return reply

    def finish(self, command: str, reply: Reply) -> Any:
        """The method's return value, or the server's error raised as its own class."""
        if not reply.ok:
            raise error_for_kind(reply.error_kind or "error", reply.error_message or "", command)
        result = reply.result
        if command == "hello":
            # (a server older than the timing field: the real microscope's generous guesses)
            self.timing = result.get("timing") or dict(_GUESSED_TIMING)
            instrument = result.get("instrument")
            self.limits = instrument.get("limits") if isinstance(instrument, dict) else None
        elif command in ("get_scan_parameters", "set_scan_parameters"):
            self.scan = result
        elif command in ("get_eels_parameters", "set_eels_parameters"):
            self.eels = result
        elif command == "acquire_image" and result.get("scan"):
            self.scan = result["scan"]
        elif command.startswith("acquire_spectr") and result.get("eels"):
            self.eels = result["eels"]
        return CONVERTERS[command](result)

    # ---------------------------------------------------------------- failures

    def timeout_error(self, command: str, timeout: float, channel: Channel) -> BridgeTimeout:
        if channel.connected:
            why = "connected, but no reply (a long acquisition? raise timeout=)"
        else:
            why = "no connection: the server is down or unreachable"
        return BridgeTimeout(f"no reply from {self.address} within {timeout:.3g} s: {why}", command)

    def auth_error(self, command: str, channel: Channel) -> BridgeAuthError:
        return BridgeAuthError(f"{channel.auth_failure} ({self.address})", command)


def slice_ms(remaining: float) -> int:
    """Milliseconds of the next poll: what is left, at most :data:`MONITOR_INTERVAL`."""
    return int(min(remaining, MONITOR_INTERVAL) * 1000) + 1


def points_argument(points: Any) -> Any:
    """``points`` as one float64 array (it travels as a raw frame), if it can be one."""
    try:
        return np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        return points  # ragged or not numeric: let the server say what is wrong


def region_argument(region: Optional[Sequence[float]]) -> Optional[List[Any]]:
    """``region`` as a JSON list (tuples and numpy values included)."""
    if region is None:
        return None
    try:
        return [float(v) for v in region]
    except (TypeError, ValueError):
        return list(region)
