"""docs/bridge-protocol.md and the server agree where the page shows code and bytes: the
complete client exchanges of §12 run as printed against a real server (stream and ZeroMQ),
and the stream framing example of §1.1 is what the transport writes."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Dict, List

import pytest

from dm_bridge import stream
from dm_bridge.backends.minimal import MinimalBackend
from dm_bridge.server import Server

PAGE = Path(__file__).resolve().parents[2] / "docs" / "bridge-protocol.md"


def client_examples() -> Dict[str, str]:
    """The Python blocks of §12, by the transport they speak."""
    section = PAGE.read_text(encoding="utf-8").split("## 12.", 1)[1]
    blocks: List[str] = re.findall(r"```python\n(.*?)```", section, re.S)
    found = {"stream" if "socket.create_connection" in b else "zmq": b for b in blocks}
    assert set(found) == {"stream", "zmq"}, "the page shows one client per transport"
    return found


def test_the_page_s_complete_client_runs_as_printed(bridge_transport):
    transport = bridge_transport  # (each transport's example under its own parameter)
    code = client_examples()[transport]
    assert "5555" in code
    with Server(MinimalBackend(), port=0, transport=transport) as server:
        port = server.endpoint.rsplit(":", 1)[1]
        printed = io.StringIO()
        namespace: Dict[str, object] = {}
        with contextlib.redirect_stdout(printed):
            try:
                exec(compile(code.replace("5555", port), str(PAGE), "exec"), namespace)
            finally:
                if "sock" in namespace:
                    namespace["sock"].close()  # type: ignore[attr-defined]
    if transport == "stream":
        assert printed.getvalue().strip() == "{'x': 255.5, 'y': 255.5}"
    else:
        assert namespace["spectra"].shape == (2, 2048)  # type: ignore[attr-defined]
        assert namespace["energy"].shape == (2048,)  # type: ignore[attr-defined]


@pytest.mark.transport("stream")
def test_the_framing_example_is_what_the_stream_transport_writes():
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert "with a 57-byte header is thus `00..02` (8 bytes), `00..00` (8), `00..39` (8)" in text
    header = b'{"protocol": 1, "id": 12, "command": "get_beam_position"}'
    assert len(header) == 57
    wire = b"".join(bytes(b) for b in stream.pack([b"", header]))
    expected = (2).to_bytes(8, "big") + bytes(8) + (0x39).to_bytes(8, "big") + header + bytes(7)
    assert wire == expected
    parts, end, _ = stream.parse(wire, 0, 1 << 20)
    assert [bytes(p) for p in parts] == [b"", header]
    assert end == len(wire) == 24 + 64  # every part at a multiple of 8 from the start
