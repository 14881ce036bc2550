"""The DM bridge: drive a STEM's DigitalMicrograph (or its digital twin) over ZeroMQ.

The server side (``protocol``, ``server``, ``backends.base``, ``backends.digitalmicrograph``)
uses only the standard library, numpy and pyzmq, with Python 3.8 syntax, so that it runs
inside DigitalMicrograph's own Python.
"""

from .errors import (
    Aborted,
    BadRequest,
    BridgeAuthError,
    BridgeConnectionError,
    BridgeError,
    BridgeTimeout,
    Busy,
    InstrumentError,
    InternalError,
    OutOfRange,
    TooLarge,
    Unauthorized,
    UnknownCommand,
    Unsupported,
    VersionMismatch,
)

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
]
