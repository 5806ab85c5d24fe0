"""Stopping without losing a request: the shared "draining" flag and a listener that stops
accepting without resetting the connections already queued on it.

What SIGTERM does (``serving.supervisor``), in order:

1. the supervisor raises the **draining flag**, one byte in a file of the runtime directory that
   every worker maps (``DrainFlag``): from that instant ``/ping`` and ``/health`` answer 503 (the
   load balancer takes the replica out of rotation) and every response carries
   ``Connection: close`` (clients and proxies reconnect, to other replicas once the balancer has
   noticed), while the server keeps accepting and answering;
2. after the drain delay (``--drain-seconds``) it **stops accepting** (``stop_accepting``): a
   classic BPF filter that drops every packet is attached to the listening socket, so the kernel
   completes no new handshake (a client's SYN goes unanswered; it sees "connection refused" once
   the socket is closed) while connections already in the accept queue stay there;
3. it SIGTERMs the workers. Each worker keeps accepting until the queue is empty
   (``accept_queue_length``, read from ``TCP_INFO``), then closes its copy of the listener,
   answers the requests of the connections it holds (``Connection: close``) and exits.

Closing a listener with connections in its queue resets them: the client had a connection (its
``connect()`` returned) and gets ECONNRESET for its request. That is what happened before:
measured ~2% of the requests sent in the first 160 ms after SIGTERM.

Linux only (the filter and ``TCP_INFO``); elsewhere the functions report that they could not
help and the workers wait a bounded time instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import socket
import struct
from pathlib import Path

# <linux/filter.h>: struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}; BPF_RET | BPF_K = 0x06:
# "return 0", i.e. keep 0 bytes of the packet = drop it.
_DROP_ALL = struct.pack("HBBI", 0x06, 0, 0, 0)
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)  # asm-generic/socket.h
# struct tcp_info: 8 one-byte fields, then u32 rto, ato, snd_mss, rcv_mss, unacked, sacked. For a
# listening socket the kernel reports the accept queue length in tcpi_unacked and the backlog in
# tcpi_sacked (net/ipv4/tcp.c, tcp_get_info; `ss -lnt` shows the same as Recv-Q / Send-Q).
_TCPI_UNACKED_OFFSET = 24
_TCP_INFO_LEN = 104


def stop_accepting(sock: socket.socket) -> bool:
    """Make the kernel drop new connection attempts on ``sock`` (a listening TCP socket) and
    keep the ones already queued. True if it worked."""
    try:
        program = ctypes.create_string_buffer(_DROP_ALL, len(_DROP_ALL))
        # struct sock_fprog {unsigned short len; struct sock_filter *filter;}, native alignment;
        # the kernel copies the program during the call.
        fprog = struct.pack("HP", 1, ctypes.addressof(program))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except (OSError, AttributeError, struct.error):
        return False
    return True


def accept_queue_length(sock: socket.socket) -> int | None:
    """Connections waiting in ``sock``'s accept queue (None where the kernel cannot say)."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(info) < _TCPI_UNACKED_OFFSET + 4:
        return None
    return int(struct.unpack_from("I", info, _TCPI_UNACKED_OFFSET)[0])


class DrainFlag:
    """One shared byte: 0 serving, 1 draining. The supervisor creates and raises it; workers
    map it read-only and read it on every health check (a memory read, no system call)."""

    def __init__(self, path: Path | str, writable: bool = False) -> None:
        self.path = Path(path)
        flags = os.O_RDWR if writable else os.O_RDONLY
        fd = os.open(self.path, flags)
        try:
            access = mmap.ACCESS_WRITE if writable else mmap.ACCESS_READ
            self._map = mmap.mmap(fd, 1, access=access)
        finally:
            os.close(fd)

    @staticmethod
    def create(path: Path | str) -> DrainFlag:
        with open(path, "wb") as f:
            f.write(b"\0")
        return DrainFlag(path, writable=True)

    @property
    def raised(self) -> bool:
        return self._map[0] != 0

    def raise_(self) -> None:
        self._map[0] = 1

    def close(self) -> None:
        with contextlib.suppress(BufferError, ValueError):
            self._map.close()
