"""The worker's HTTP connections: uvicorn's h11 protocol plus the limits uvicorn lacks.

``ServingProtocol`` (a subclass of uvicorn's ``H11Protocol``, passed as ``http=`` to uvicorn) adds:

* **header timeout**: a new connection must deliver a complete request head within
  ``--header-timeout`` (10 s), and so must every later request on a keep-alive connection from
  its first byte. uvicorn times out only idle keep-alive connections, so connections that send
  nothing, or a byte every few seconds (slow loris), stayed open for good: 200 of them held 200
  descriptors, ~1,200 exhausted a finite descriptor limit and every good request timed out.
  A connection that sent nothing is closed; one that sent part of a head gets 408 first.
* **connection cap**: a worker holding ``--max-connections`` connections answers a new one
  with a 503 JSON body and ``Connection: close`` at once, without reading it.
* **lingering close** after an answer sent before the request body was read (413, 408): the
  server half-closes and discards what the client still sends for up to ``LINGER_SECONDS``, so
  the client reads the 413 instead of a connection reset.
* **drain**: on shutdown a connection that was accepted but has not sent its request yet is
  not closed under the client (uvicorn closes it as "idle", and the request it is sending is
  lost): it gets until the header timeout to send it, is answered with ``Connection: close``,
  then closed.
* it tells the request's handler when its client disconnects (``on_lost``), so a request whose
  client went away ends at once and is counted as 499.

``ServingServer`` (a subclass of ``uvicorn.Server``) waits, before closing the listener, until the
kernel's accept queue is empty (see ``serving.drain``).

Both override uvicorn internals (``H11Protocol`` methods, ``Server.shutdown``);
``tests/serving`` exercises each behaviour against the real server, so a uvicorn upgrade that
changes them fails there.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from serving.drain import DrainFlag, accept_queue_length
from serving.invocations import CONNECTION_KEY
from serving.metrics import Metrics

logger = logging.getLogger("serving")

LINGER_SECONDS = 2.0  # after a 413/408: how long the rest of the request body is read and dropped
REJECT_LINGER_SECONDS = 0.5  # after the over-the-cap 503
QUEUE_WAIT_SECONDS = 2.0  # on shutdown: longest wait for the accept queue to empty
_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class WorkerState:
    """What the app and the connections of one worker share: is it going away?"""

    def __init__(self, drain: DrainFlag | None = None) -> None:
        self.drain = drain
        self.shutting_down = False  # the worker stopped accepting (SIGTERM reached it)

    def closing(self) -> bool:
        """True once the supervisor drains or this worker shuts down: answers carry
        ``Connection: close`` and readiness is 503."""
        return self.shutting_down or (self.drain is not None and self.drain.raised)


def _over_limit_answer(limit: int) -> bytes:
    body = (
        b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "Too many connections: this worker '
        b"already holds " + str(limit).encode() + b' (--max-connections / SERVING_MAX_CONNECTIONS)."}'
    )
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nretry-after: 1\r\nconnection: close\r\n\r\n" + body
    )


class _LingeringTransport:
    """Stands in for the transport of one answer: its ``close()`` half-closes and lingers."""

    def __init__(self, protocol: ServingProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        self._protocol.linger_close(LINGER_SECONDS)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ServingProtocol(H11Protocol):
    """uvicorn's h11 protocol with a header timeout, a connection cap and a clean drain.

    Configured by ``protocol_class``: the class attributes below are per worker.
    """

    header_timeout: float = 10.0
    max_connections: int = 1000
    state: WorkerState = WorkerState()
    metrics: Metrics | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._discarding = False  # lingering or rejected: incoming bytes are dropped
        self._close_after_request = False
        self._lost_callback: Callable[[str], None] | None = None
        self._cycle_seen: object = None

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self.transport = transport
            self._discarding = True
            self._dropped("over_limit")
            transport.write(_over_limit_answer(self.max_connections))
            self.linger_close(REJECT_LINGER_SECONDS)
            return
        super().connection_made(transport)
        if self.state.shutting_down:
            self._close_after_request = True  # accepted while draining the queue: one request, then close
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)
        callback, self._lost_callback = self._lost_callback, None
        if callback is not None and self.cycle is not None and not self.cycle.response_complete:
            callback("client_gone")

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return  # the rest of a body we answered without reading, or a rejected connection
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            # part of a request head (a new request on a keep-alive connection): time it
            if self._header_timer is None and not self.transport.is_closing():
                self._arm_header_timer()
        elif self._header_timer is not None:
            self._cancel_header_timer()

    def handle_events(self) -> None:
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and cycle is not self._cycle_seen:
            # a new request: let its handler reach this connection (scope is the request's)
            self._cycle_seen = cycle
            cycle.scope[CONNECTION_KEY] = self  # type: ignore[literal-required]
            if self._close_after_request:
                cycle.keep_alive = False

    def on_response_complete(self) -> None:
        if self._discarding:
            self.server_state.total_requests += 1
            return
        super().on_response_complete()

    def shutdown(self) -> None:
        if self._discarding:
            return  # closes itself when its linger ends
        if self.cycle is None and not self.transport.is_closing():
            # Accepted, no request yet: it may be on its way. The header timer (armed when the
            # connection was made) bounds the wait; the request is answered with Connection: close.
            self._close_after_request = True
            return
        super().shutdown()

    # -- what the request handler uses (through scope[CONNECTION_KEY]) ------------------------

    def on_lost(self, callback: Callable[[str], None] | None) -> None:
        """Call ``callback("client_gone")`` if the client disconnects before the answer is
        complete (``None`` removes it)."""
        self._lost_callback = callback

    def linger(self) -> None:
        """The current answer is sent before the request body was read: after it, half-close
        and drop what the client still sends instead of resetting the connection."""
        if self.cycle is not None:
            self.cycle.keep_alive = False
            self.cycle.transport = _LingeringTransport(self)  # type: ignore[assignment]

    def linger_close(self, seconds: float) -> None:
        """Send FIN, drop incoming bytes, close after ``seconds`` (or when the client closes)."""
        self._discarding = True
        self._cancel_header_timer()
        self._unset_keepalive_if_required()
        transport = self.transport
        if transport.is_closing():
            return
        try:
            if transport.can_write_eof():
                transport.write_eof()
        except OSError:
            transport.close()
            return
        if self.flow is not None:
            self.flow.resume_reading()  # uvicorn paused reading when the unread body piled up
        self.loop.call_later(seconds, transport.close)

    # -- header timeout --------------------------------------------------------------------

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self._discarding:
            return
        if self.conn.their_state is not h11.IDLE:
            return  # the head arrived meanwhile
        if self.cycle is not None and not self.cycle.response_complete:
            return  # an answer is being produced (pipelined request behind it)
        partial = bool(self.conn.trailing_data[0])
        self._dropped("header_timeout")
        if partial:
            self.transport.write(_408)
        self.transport.close()

    def _dropped(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped.labels(reason=reason).inc()


def protocol_class(
    header_timeout: float, max_connections: int, state: WorkerState, metrics: Metrics | None
) -> type[ServingProtocol]:
    """A ``ServingProtocol`` subclass configured for one worker (uvicorn instantiates it)."""
    return type(
        "WorkerProtocol",
        (ServingProtocol,),
        {
            "header_timeout": header_timeout,
            "max_connections": max_connections,
            "state": state,
            "metrics": metrics,
        },
    )


class ServingServer(uvicorn.Server):
    """uvicorn's server; on shutdown it first accepts what is queued on the listener."""

    def __init__(self, config: uvicorn.Config, listener: socket.socket, state: WorkerState) -> None:
        super().__init__(config)
        self.listener = listener
        self.state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # SIGINT is for the supervisor (Ctrl-C reaches the whole process group): it drains and
        # then sends SIGTERM. A worker that stopped on SIGINT itself would leave the supervisor
        # restarting "crashed" workers during the drain, and end in a KeyboardInterrupt.
        if sig == signal.SIGINT:
            return
        super().handle_exit(sig, frame)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.state.shutting_down = True
        await self._wait_for_accept_queue()
        await super().shutdown(sockets=sockets)

    async def _wait_for_accept_queue(self) -> None:
        """Connections the kernel accepted but no worker has yet would be reset when the last
        copy of the listener closes: keep accepting (the event loop does) until none is left.
        The supervisor has stopped new ones from arriving (``serving.drain.stop_accepting``)."""
        deadline = time.monotonic() + QUEUE_WAIT_SECONDS
        while True:
            queued = accept_queue_length(self.listener)
            if not queued:
                return
            if time.monotonic() >= deadline:
                logger.warning("%d connection(s) still queued on the listener at shutdown", queued)
                return
            await asyncio.sleep(0.005)
