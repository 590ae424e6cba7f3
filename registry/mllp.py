"""Minimal Lower Layer Protocol (MLLP, HL7 v2.5 Appendix C / ITI TF-2x C.2.1) server and client.

A frame is ``0x0B <message> 0x1C 0x0D``. The server answers every framed message on a connection
with the handler's reply, in order; bytes outside frames are skipped (senders and load balancers
emit stray line feeds or health-check probes), a frame larger than ``max_message_size`` closes the
connection so one client cannot exhaust memory.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
MAX_MESSAGE_SIZE = 1024 * 1024
_READ_CHUNK = 64 * 1024


class MLLPError(ConnectionError):
    """Framing violated (oversized frame) or the peer closed in the middle of a frame."""


def frame(message: bytes) -> bytes:
    """Wrap *message* in an MLLP block."""
    return START_BLOCK + message + END_BLOCK


class FrameDecoder:
    """Incremental MLLP deframer: feed it received bytes, it yields complete messages."""

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._in_frame = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Yield every message completed by *data*; raise :class:`MLLPError` on an oversized frame."""
        self._buf += data
        while True:
            if not self._in_frame:
                start = self._buf.find(START_BLOCK)
                if start < 0:  # only garbage so far: nothing worth keeping
                    self._buf.clear()
                    return
                del self._buf[: start + 1]
                self._in_frame = True
            end = self._buf.find(END_BLOCK)
            restart = self._buf.find(START_BLOCK)
            if restart >= 0 and (end < 0 or restart < end):  # sender abandoned a frame and began anew
                del self._buf[: restart + 1]
                continue
            if end < 0:
                if len(self._buf) > self.max_message_size + 1:
                    raise MLLPError(f"MLLP frame exceeds {self.max_message_size} bytes")
                return
            if end > self.max_message_size:
                raise MLLPError(f"MLLP frame exceeds {self.max_message_size} bytes")
            message = bytes(self._buf[:end])
            del self._buf[: end + len(END_BLOCK)]
            self._in_frame = False
            yield message

    @property
    def pending(self) -> bool:
        """True while a frame has started but not ended."""
        return self._in_frame


# --- server ----------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Connection:
    task: asyncio.Task
    busy: bool = False  # a handler call is in flight: let it finish and answer before closing
    closing: bool = False


# Connections of each server, so stop_mllp can close them (asyncio.Server.close() in 3.11 does not).
_CONNECTIONS: weakref.WeakKeyDictionary[asyncio.Server, set[_Connection]] = weakref.WeakKeyDictionary()


async def serve_mllp(host: str, port: int, handler: Callable[[bytes], bytes],
                     ssl: _ssl.SSLContext | None = None, *,
                     max_message_size: int = MAX_MESSAGE_SIZE) -> asyncio.Server:
    """Start an MLLP listener; *handler* (sync, may block on a database) maps a message to its reply.

    Port 0 picks a free port (see ``server.sockets[0].getsockname()``). Stop it with
    :func:`stop_mllp` for a graceful shutdown.
    """
    connections: set[_Connection] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(asyncio.current_task())  # type: ignore[arg-type]
        connections.add(conn)
        peer = writer.get_extra_info("peername")
        try:
            await _serve_connection(conn, reader, writer, handler, max_message_size)
        except MLLPError as exc:
            log.warning("MLLP %s: %s; closing connection", peer, exc)
        except (ConnectionError, _ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.info("MLLP %s: connection lost: %s", peer, exc)
        except asyncio.CancelledError:
            pass  # stop_mllp closing an idle connection
        except Exception:  # a handler bug must not take the listener down
            log.exception("MLLP %s: handler failed; closing connection", peer)
        finally:
            connections.discard(conn)
            writer.close()
            try:
                await writer.wait_closed()
            except (Exception, asyncio.CancelledError):
                pass

    server = await asyncio.start_server(on_connect, host, port, ssl=ssl)
    _CONNECTIONS[server] = connections
    return server


async def _serve_connection(conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            handler: Callable[[bytes], bytes], max_message_size: int) -> None:
    decoder = FrameDecoder(max_message_size)
    while not conn.closing:
        data = await reader.read(_READ_CHUNK)
        if not data:
            if decoder.pending:
                raise MLLPError("peer closed the connection inside a frame")
            return
        for message in decoder.feed(data):
            conn.busy = True
            reply = await asyncio.to_thread(handler, message)  # keep database work off the event loop
            writer.write(frame(reply))
            await writer.drain()
            conn.busy = False
            if conn.closing:
                return


async def stop_mllp(server: asyncio.Server, timeout: float = 5.0) -> None:
    """Stop accepting, close idle connections, let in-flight messages be answered (up to *timeout*)."""
    server.close()
    connections = _CONNECTIONS.pop(server, set())
    for conn in list(connections):
        conn.closing = True
        if not conn.busy:
            conn.task.cancel()
    tasks = [c.task for c in connections]
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    await server.wait_closed()


# --- client ----------------------------------------------------------------------------------------


class MLLPClient:
    """Blocking MLLP client connection (several request/reply exchanges on one socket)."""

    def __init__(self, host: str, port: int, timeout: float = 5, *,
                 ssl_context: _ssl.SSLContext | None = None, server_hostname: str | None = None,
                 max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
        self.sock = sock
        self._decoder = FrameDecoder(max_message_size)
        self._ready: list[bytes] = []

    def send(self, message: bytes) -> None:
        self.sock.sendall(frame(message))

    def receive(self) -> bytes:
        """Next framed reply; raises :class:`MLLPError` if the server closes first."""
        while not self._ready:
            data = self.sock.recv(_READ_CHUNK)
            if not data:
                raise MLLPError("connection closed by the MLLP server before a reply")
            self._ready.extend(self._decoder.feed(data))
        return self._ready.pop(0)

    def request(self, message: bytes) -> bytes:
        self.send(message)
        return self.receive()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MLLPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_mllp(host: str, port: int, message: bytes, timeout: float = 5, *,
              ssl_context: _ssl.SSLContext | None = None, server_hostname: str | None = None) -> bytes:
    """Send one message over a new connection and return the reply (e.g. an ACK) without framing."""
    with MLLPClient(host, port, timeout, ssl_context=ssl_context, server_hostname=server_hostname) as client:
        return client.request(message)
