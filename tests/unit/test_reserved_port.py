"""The test harness's reserved ports: known before a server starts, yet never handed to anyone
else, while the server meant for them can still listen there."""

from __future__ import annotations

import socket

import pytest
from harness import reserved_port


def test_a_reserved_port_is_not_given_out_but_its_server_can_listen() -> None:
    port = reserved_port()
    # Nobody listens yet: a client is refused.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # A bind without SO_REUSEADDR (a stray process, another test) is refused; the kernel
    # gives no bound port out as an ephemeral one either.
    with socket.socket() as stray, pytest.raises(OSError):
        stray.bind(("127.0.0.1", port))
    # The intended server binds it with SO_REUSEADDR (as trio, Prosody, ejabberd and
    # PostgreSQL do) and accepts connections.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            accepted, _ = server.accept()
            accepted.close()
