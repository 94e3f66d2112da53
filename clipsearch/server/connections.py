"""Deadlines for slow clients: a connection that sends a request's headers or body too slowly is dropped.

uvicorn bounds only the idle time between keep-alive requests; a client that opens connections and sends a
header byte now and then (slowloris) holds each one, and its memory, for as long as it likes: 400 such
connections were held for 30 s. Here every connection must deliver a request's headers within
`header_timeout` seconds of being opened or of its previous response, and a request's body within
`body_timeout` seconds of its headers; otherwise the connection is closed. The time a request spends in the
app (a search, a model load) is not bounded here: only what the client owes.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

HEADER_TIMEOUT = 10.0  # seconds for a request's headers to arrive
BODY_TIMEOUT = 60.0  # seconds for its body (uploads are at most 20 MB)
TICK = 0.5  # how often a connection's deadlines are checked


def http_protocol(header_timeout: float = HEADER_TIMEOUT, body_timeout: float = BODY_TIMEOUT) -> type:
    """uvicorn's h11 HTTP protocol class (h11 comes with uvicorn) with these deadlines."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class DeadlineProtocol(H11Protocol):
        """The protocol plus a watchdog per connection that closes it when the client is too slow."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(cast(asyncio.Transport, transport))
            self._waiting_since = self.loop.time()  # waiting for the next request's headers since
            self._cycle_seen: Any = None  # the request whose headers arrived last
            self._headers_at = 0.0
            self._done_seen: Any = None  # the last request whose response completed
            self._watch: asyncio.TimerHandle | None = self.loop.call_later(TICK, self._check)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
            super().connection_lost(exc)

        def _check(self) -> None:
            self._watch = None
            if self.transport.is_closing():
                return
            now = self.loop.time()
            cycle = self.cycle
            if cycle is not None and cycle is not self._cycle_seen:
                self._cycle_seen, self._headers_at = cycle, now
            if cycle is not None and cycle.response_complete and cycle is not self._done_seen:
                self._done_seen, self._waiting_since = cycle, now
            idle = cycle is None or cycle.response_complete
            if idle and now - self._waiting_since > header_timeout:
                self.transport.close()  # no complete request headers in time
                return
            if not idle and cycle.more_body and now - self._headers_at > body_timeout:
                self.transport.close()  # the body did not arrive in time
                return
            self._watch = self.loop.call_later(TICK, self._check)

    return DeadlineProtocol
