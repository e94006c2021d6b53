"""A client holding more idle connections than select() can watch does not stop the server.

waitress watched its sockets with select(), which fails for good once a descriptor passes
1,023: about 1,000 idle connections from one client stopped `wattproof serve` (and, with
--workers, crashed every worker in a loop). The server polls instead; this test holds more
than 1,100 connections in both serving modes and asks the server to work meanwhile."""

from __future__ import annotations

import resource
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import serve

HELD = 1150  # past select()'s 1,024 descriptors, bounded


def _room_for(sockets: int) -> None:
    """This test process needs a descriptor per held connection too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = sockets + 256
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.fail(f"the hard limit of open files ({hard}) is below the {wanted} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=20) as r:
        r.read()
        return int(r.status)


@pytest.mark.parametrize("mode", [(), ("--workers", "2", "--threads", "2")], ids=["waitress", "workers-2"])
def test_more_than_a_thousand_idle_connections_do_not_stop_the_server(tmp_path: Path, mode: tuple[str, ...]) -> None:
    _room_for(HELD)
    proc, url = serve(tmp_path / "v.sqlite", 0, None, *mode)
    host, port = url.removeprefix("http://").split(":")
    held: list[socket.socket] = []
    try:
        for n in range(HELD):
            held.append(socket.create_connection((host, int(port)), timeout=10))
            if n % 250 == 249:  # the server keeps answering while the pile grows
                assert _get(f"{url}/v1/ledger/key") == 200
        for _ in range(20):  # and with every one of them still open
            assert _get(f"{url}/v1/ledger/checkpoint") in (200, 404)
        assert proc.poll() is None, "the server process ended"
    finally:
        for s in held:
            s.close()
        alive = proc.poll() is None
        proc.terminate()
        proc.wait(timeout=20)
    assert alive
