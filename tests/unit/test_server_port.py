"""The background server's port is a setting: PROMPTDAG_SERVER_PORT when it is free (4200 by
default), any free port when it is taken."""

from __future__ import annotations

import socket

import pytest

from promptdag.remote import autoserver
from promptdag.remote.local_server import free_port


def test_the_server_port_comes_from_the_setting(monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    monkeypatch.setenv("PROMPTDAG_SERVER_PORT", str(port))
    assert autoserver._port() == port
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        assert autoserver._port() != port

