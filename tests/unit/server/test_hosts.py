"""Which Host names a loopback server answers: the loopback names and the address it listens on."""

from __future__ import annotations

from clipsearch.server import is_loopback, loopback_hosts


def test_the_printed_url_of_any_loopback_address_is_answered() -> None:
    assert "127.0.0.2" in loopback_hosts("127.0.0.2") and is_loopback("127.0.0.2")
    assert {"127.0.0.1", "localhost", "[::1]"} <= set(loopback_hosts("127.0.0.1"))
    assert "[::1]" in loopback_hosts("::1") and "evil.example" not in loopback_hosts("127.0.0.1")
