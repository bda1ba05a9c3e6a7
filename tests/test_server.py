"""`python -m switchyard.server`, the command that the dev stack and the Docker image run, in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_all(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


@pytest.fixture
def server() -> Iterator[tuple[int, subprocess.Popen[str]]]:
    port = _free_port()
    env = os.environ | {"SWITCHYARD_HEADER_TIMEOUT": "0.5"}
    command = [sys.executable, "-m", "switchyard.server", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"the server did not listen within {STARTUP_TIMEOUT} s"
                time.sleep(0.1)
        yield port, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def test_it_serves_with_the_edge_protocol_and_the_settings_from_the_environment(
    server: tuple[int, subprocess.Popen[str]],
) -> None:
    port, process = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"BREW /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body)["error"]["code"] == "invalid_http_request"

    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\n")
        head, _, body = _read_all(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body)["error"]["message"].endswith("the limit is 0.5 s.")
    assert time.monotonic() - started < 5

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    # A graceful shutdown; uvicorn then re-raises the signal it caught, as its own command does.
    assert "Finished server process" in output
    assert process.returncode == -signal.SIGTERM, output
    assert "Traceback" not in output
    assert "refused: Invalid HTTP request: Invalid method encountered." in output
