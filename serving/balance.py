"""Spreading keep-alive connections over the worker processes.

All workers accept from one listening socket. With keep-alive a connection stays on the worker
that accepted it for its whole life, so *who accepts* decides how the load is split. asyncio's
default is to accept every queued connection each time the socket turns readable (up to the
backlog uvicorn passes, 2048), so the first worker to wake up takes a whole burst. A proxy or a
load generator that opens its pool of connections at once (an Envoy or ALB pool when the pod
turns ready, ``wrk -c8``) then lands everything on one worker while the others idle: measured on
2 workers, 8 of 8 connections on one worker in most runs, and less throughput than 1 worker.

``BalancedAcceptEventLoop`` changes two things, in the worker's event loop only:

1. it accepts one connection per wake-up (like nginx's default ``multi_accept off``);
2. each worker publishes how many connections it holds on a small shared board (an mmap of one
   int64 per worker slot, in the server's runtime directory; refreshed before every accept and
   every 20 ms). Before accepting, a worker that holds more connections than the least-loaded
   other worker stops listening for 2 ms per connection of difference (at most 20 ms) so that
   worker can take the connection; after the pause it accepts one queued connection whatever
   the counts, so a busy or descheduled peer never holds a connection back longer than that.

With balanced workers nothing waits. Keep-alive connections are opened rarely, so the cost is a
few ms on the setup of a connection that arrives while the split is uneven. Measured with
``wrk -c8`` against 2 workers on 2 busy CPUs: 8/0 or 7/1 splits in most runs before, 4/4 or 5/3
in 14 of 15 runs (6/2 in the other) after.

It overrides ``_accept_connection``, a private method of asyncio's selector loop (stable since
Python 3.7); ``event_loop_factory`` checks its signature and falls back to the plain loop (and
asyncio's batch accept) if it ever changes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import mmap
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger("serving")

DEFER_SECONDS = 0.002  # per connection held above the least-loaded worker
MAX_DEFER_SECONDS = 0.02
PUBLISH_SECONDS = 0.02
ABSENT = -1  # a slot whose worker is not running (not counted as "least loaded")
_SLOT = struct.Struct("q")


class ConnectionBoard:
    """One int64 per worker slot in a shared file: the connections each worker holds."""

    def __init__(self, path: Path | str, slot: int, slots: int) -> None:
        if not 0 <= slot < slots:
            raise ValueError(f"slot {slot} out of range 0..{slots - 1}")
        self.slot = slot
        self.slots = slots
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, slots * _SLOT.size)
        finally:
            os.close(fd)

    @staticmethod
    def create(path: Path | str, slots: int) -> None:
        """A board with every slot absent (the supervisor makes it before starting workers)."""
        with open(path, "wb") as f:
            f.write(_SLOT.pack(ABSENT) * slots)

    @staticmethod
    def clear(path: Path | str, slot: int) -> None:
        """Mark a slot absent (its worker exited)."""
        with open(path, "r+b") as f:
            f.seek(slot * _SLOT.size)
            f.write(_SLOT.pack(ABSENT))

    def publish(self, connections: int) -> None:
        _SLOT.pack_into(self._map, self.slot * _SLOT.size, connections)

    def read(self) -> list[int]:
        return [_SLOT.unpack_from(self._map, i * _SLOT.size)[0] for i in range(self.slots)]

    def least_other(self) -> int | None:
        """Fewest connections held by another running worker (None: no other worker)."""
        others = [n for i, n in enumerate(self.read()) if i != self.slot and n >= 0]
        return min(others) if others else None


class BalancedAcceptEventLoop(asyncio.SelectorEventLoop):
    """Selector event loop that accepts one connection at a time and defers to idler workers."""

    board: ConnectionBoard | None = None  # set by the worker before the loop starts
    defer_seconds: float = DEFER_SECONDS
    max_defer_seconds: float = MAX_DEFER_SECONDS

    def __init__(self) -> None:
        super().__init__()
        self._force_until = 0.0  # after a pause, accept without deferring until then
        self._publishing = False

    def open_connections(self) -> int:
        """Connections this worker holds: the loop's socket transports that are not closing."""
        transports = getattr(self, "_transports", None)
        if transports is None:
            return 0
        return sum(1 for t in list(transports.values()) if not t.is_closing())

    def _start_serving(self, protocol_factory: Any, sock: socket.socket, *args: Any, **kwargs: Any) -> None:
        start = super()._start_serving  # type: ignore[misc]  # private, not in typeshed
        start(protocol_factory, sock, *args, **kwargs)
        if self.board is not None and not self._publishing:
            self._publishing = True
            self._publish_periodically()

    def _publish_periodically(self) -> None:
        """Keep this worker's count fresh as its connections close (they do not pass here)."""
        if self.board is not None and not self.is_closed():
            self.board.publish(self.open_connections())
            self.call_later(PUBLISH_SECONDS, self._publish_periodically)

    def _accept_connection(
        self,
        protocol_factory: Any,
        sock: socket.socket,
        sslcontext: Any = None,
        server: Any = None,
        backlog: int = 100,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        board = self.board
        if board is not None:
            mine = self.open_connections()
            board.publish(mine)
            least = board.least_other()
            if least is not None and mine > least and self.time() >= self._force_until:
                # Let a worker with fewer connections take this one; accept it ourselves after
                # the pause if it is still waiting.
                self._remove_reader(sock.fileno())  # type: ignore[attr-defined]
                self.call_later(
                    min(self.defer_seconds * (mine - least), self.max_defer_seconds),
                    self._resume_accepting,
                    protocol_factory,
                    sock,
                    (sslcontext, server, backlog, *args),
                    kwargs,
                )
                return
        self._force_until = 0.0  # a pause lets exactly one connection through
        accept = super()._accept_connection  # type: ignore[misc]  # private, not in typeshed
        accept(protocol_factory, sock, sslcontext, server, 1, *args, **kwargs)

    def _resume_accepting(
        self, protocol_factory: Any, sock: socket.socket, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        server = args[1]
        if sock.fileno() == -1 or (server is not None and not server.is_serving()):
            return  # the server stopped listening meanwhile (shutdown)
        self._force_until = self.time() + self.defer_seconds
        self._start_serving(protocol_factory, sock, *args, **kwargs)


def _supported() -> bool:
    """The overrides rely on private asyncio methods: check their shape before using them."""
    accept = getattr(asyncio.SelectorEventLoop, "_accept_connection", None)
    start = getattr(asyncio.SelectorEventLoop, "_start_serving", None)
    if accept is None or start is None or not hasattr(asyncio.SelectorEventLoop, "_remove_reader"):
        return False
    expected = ["self", "protocol_factory", "sock", "sslcontext", "server", "backlog"]
    return (
        list(inspect.signature(accept).parameters)[:6] == expected
        and list(inspect.signature(start).parameters)[:6] == expected
    )


def event_loop_factory(board: ConnectionBoard | None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop class a worker runs uvicorn on."""
    if not _supported():
        logger.warning("asyncio internals changed: workers accept connections in batches")
        return asyncio.SelectorEventLoop

    class Loop(BalancedAcceptEventLoop):
        pass

    Loop.board = board
    return Loop
