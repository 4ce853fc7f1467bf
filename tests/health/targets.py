"""Real local targets the health tests start: a threaded HTTP server, a gRPC health server and a TCP
listener that counts connections."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

# How long a /together request waits at most for its peers: failing a test beats hanging it.
WAIT_LIMIT_S = 30


class _Handler(BaseHTTPRequestHandler):
    """/status/<code>, /sleep/<ms>, /json (the server's `json_body`), /together/<n> (answered only
    once n such requests are in at the same time, so they were sent concurrently; 504 if they never
    are), anything else: 200 "hello ok".

    `arrivals` lists requests as they come in, `hits` as they are answered.
    """

    def do_GET(self):
        self.server.arrivals.append(self.path)  # on arrival: a test can tell a check is under way
        parts = self.path.strip("/").split("/")
        status, body, ctype = 200, b"hello ok", "text/plain"
        if parts[0] == "status":
            status = int(parts[1])
        elif parts[0] == "sleep":
            time.sleep(int(parts[1]) / 1000)
        elif parts[0] == "json":
            body, ctype = json.dumps(self.server.json_body).encode(), "application/json"
        elif parts[0] == "together":
            try:
                self.server.barrier(int(parts[1])).wait(WAIT_LIMIT_S)
            except threading.BrokenBarrierError:
                status, body = 504, b"the other requests never came"
        self.server.hits.append(self.path)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

    def barrier(self, parties: int) -> threading.Barrier:
        with self.lock:
            return self.barriers.setdefault(parties, threading.Barrier(parties))

    def handle_error(self, request, client_address):
        # A client that gave up (a check past its timeout, a killed worker) is expected here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def http_server(json_body=None):
    server = _Server(("127.0.0.1", 0), _Handler)
    server.json_body, server.hits, server.arrivals = json_body or {}, [], []
    server.lock, server.barriers = threading.Lock(), {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def grpc_health_server():
    """Yields (servicer, "127.0.0.1:port"); set statuses with servicer.set(service, status)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class TcpListener:
    """A loopback TCP listener that accepts and closes every connection, counting them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            self._accept_waiting()

    def _accept_waiting(self) -> None:
        try:
            while True:
                conn, _ = self.sock.accept()
                conn.close()
                self.accepted += 1
        except (TimeoutError, BlockingIOError):
            pass

    def drain(self) -> int:
        """Stop serving; accept what is still queued (connections the kernel already completed)."""
        self._stop.set()
        self._thread.join(5)
        self.sock.setblocking(False)
        self._accept_waiting()
        return self.accepted


@contextlib.contextmanager
def tcp_listener():
    listener = TcpListener()
    listener._thread.start()
    try:
        yield listener
    finally:
        listener.drain()
        listener.sock.close()
