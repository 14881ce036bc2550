"""Errors of the DM bridge, shared by the server, the backends and the clients.

Every error the server can report has a stable *kind* (a short string on the wire). A backend
raises one of the classes below; the server replies with its kind and message; the client
raises the same class again, so ``except OutOfRange`` works on both sides of the network.

Standard library only: this module runs inside DigitalMicrograph (Python 3.8).
"""

from __future__ import annotations

from typing import Dict, Optional, Type

__all__ = [
    "Aborted",
    "BadRequest",
    "BridgeAuthError",
    "BridgeConnectionError",
    "BridgeError",
    "BridgeTimeout",
    "Busy",
    "InstrumentError",
    "InternalError",
    "OutOfRange",
    "TooLarge",
    "Unauthorized",
    "UnknownCommand",
    "Unsupported",
    "VersionMismatch",
    "error_for_kind",
]


class BridgeError(Exception):
    """An error reported by the bridge server, carrying its stable ``kind``.

    Attributes:
        kind: the wire name of the error (``"out_of_range"``, ``"busy"``, ...).
        message: a human-readable explanation.
        command: the command that failed, when known.
    """

    kind = "error"

    def __init__(self, message: str = "", command: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.command = command

    def __str__(self) -> str:
        where = f" in {self.command!r}" if self.command else ""
        return f"[{self.kind}]{where} {self.message}"


class BadRequest(BridgeError):
    """The request is malformed: bad JSON, wrong argument types, truncated frames."""

    kind = "bad_request"


class UnknownCommand(BridgeError):
    """The command is not on the server's allow-list."""

    kind = "unknown_command"


class Unsupported(BridgeError):
    """The command exists but this backend cannot do it (``get_truth`` on a microscope)."""

    kind = "unsupported"


class OutOfRange(BridgeError):
    """An argument is outside the instrument's limits (beam outside the field, exposure cap)."""

    kind = "out_of_range"


class TooLarge(BridgeError):
    """The request, or the reply it would produce, exceeds the configured size limit."""

    kind = "too_large"


class Busy(BridgeError):
    """The instrument's queue is full; try again later."""

    kind = "busy"


class Unauthorized(BridgeError):
    """The client is not allowed to run this command."""

    kind = "unauthorized"


class Aborted(BridgeError):
    """The acquisition was interrupted by an ``abort`` request."""

    kind = "aborted"


class InstrumentError(BridgeError):
    """The instrument (DigitalMicrograph, the twin, the replay data) reported a failure."""

    kind = "instrument_error"


class VersionMismatch(BridgeError):
    """The client speaks a protocol version this server does not."""

    kind = "version_mismatch"


class InternalError(BridgeError):
    """An unexpected failure inside the server (a bug); the server keeps serving."""

    kind = "internal_error"


_BY_KIND: Dict[str, Type[BridgeError]] = {
    cls.kind: cls
    for cls in (
        BadRequest,
        UnknownCommand,
        Unsupported,
        OutOfRange,
        TooLarge,
        Busy,
        Unauthorized,
        Aborted,
        InstrumentError,
        VersionMismatch,
        InternalError,
    )
}

ERROR_KINDS = tuple(sorted(_BY_KIND))


def error_for_kind(kind: str, message: str, command: Optional[str] = None) -> BridgeError:
    """Rebuild the exception a server reported (client side).

    Unknown kinds (a newer server) become a plain :class:`BridgeError` that still carries
    the kind, so clients never crash on an error they do not know yet.
    """
    cls = _BY_KIND.get(kind)
    if cls is None:
        err = BridgeError(message, command)
        err.kind = kind
        return err
    return cls(message, command)


# Client-side failures that never come from the server's reply.


class BridgeTimeout(BridgeError):
    """No reply arrived within the call's timeout (server down, or a very long acquisition)."""

    kind = "timeout"


class BridgeConnectionError(BridgeError):
    """The client could not talk to the server at all."""

    kind = "connection_error"


class BridgeAuthError(BridgeError):
    """CurveZMQ authentication failed: wrong server key, or this client's key is not allowed."""

    kind = "auth_failed"
