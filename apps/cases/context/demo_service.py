"""A stand-in for the outside systems (delivery, customer, merchant, HR): deterministic fake
records over HTTP on loopback, with knobs to make it slow or down. `make run` supervises it;
tests start it in a thread. Standard library only, so it starts without Django.

    GET  /<type>/<key>        one record (404 for an unknown type)
    POST /<type>/_bulk        {"keys": [...]} -> {"records": {key: record}}
    GET  /_control            mode, delay and how many fetches each type served
    POST /_control            {"mode": "ok"|"slow"|"down", "delay": s, "change": [type, key], "reset": true}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

TYPES = ("delivery", "customer", "merchant", "agent")
_STATUSES = ("created", "picked", "in transit", "out for delivery", "delivered", "delayed")
_CITIES = ("Berlin", "Hamburg", "Munich", "Cologne", "Leipzig", "Bremen")
_TIERS = ("standard", "silver", "gold", "platinum")
_TEAMS = ("Returns", "Payments", "Logistics", "Merchants")


def demo_record(type: str, key: str, version: int = 0) -> dict:
    """The same record for the same (type, key, version): a change bumps the version."""
    n = int.from_bytes(hashlib.sha256(f"{type}:{key}:{version}".encode()).digest()[:8], "big")
    if type == "delivery":
        return {"id": key, "status": _STATUSES[n % len(_STATUSES)], "courier": f"Courier {n % 40 + 1}",
                "eta_minutes": n % 90 + 5, "city": _CITIES[n % len(_CITIES)], "version": version}
    if type == "customer":
        return {"id": key, "name": f"Customer {key}", "tier": _TIERS[n % len(_TIERS)],
                "orders": n % 200, "city": _CITIES[(n >> 8) % len(_CITIES)], "version": version}
    if type == "merchant":
        return {"id": key, "name": f"Merchant {key}", "plan": _TIERS[n % len(_TIERS)],
                "open_orders": n % 500, "version": version}
    return {"id": key, "team": _TEAMS[n % len(_TEAMS)], "languages": ["en", "de"][: n % 2 + 1],
            "shift": f"{6 + n % 10:02d}:00-{14 + n % 10:02d}:00", "version": version}


class DemoState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "ok"
        self.delay = 2.0
        self.versions: Counter = Counter()
        self.fetches: Counter = Counter()  # records served, by type

    def snapshot(self) -> dict:
        with self.lock:
            return {"mode": self.mode, "delay": self.delay, "fetches": dict(self.fetches)}

    def control(self, body: dict) -> None:
        with self.lock:
            if body.get("reset"):
                self.mode, self.delay = "ok", 2.0
                self.versions.clear()
                self.fetches.clear()
            if body.get("mode") in ("ok", "slow", "down"):
                self.mode = body["mode"]
            if isinstance(body.get("delay"), (int, float)):
                self.delay = float(body["delay"])
            change = body.get("change")
            if isinstance(change, list) and len(change) == 2:
                self.versions[tuple(change)] += 1


class _Handler(BaseHTTPRequestHandler):
    server: DemoServer
    # HTTP/1.0, one request per connection: a stopped server is down at once, for every client.
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args) -> None:  # quiet: the stack's logs are JSON lines
        pass

    def _send(self, status: int, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _outage(self) -> bool:
        """Apply the mode: True when the answer is an outage (already sent)."""
        state = self.server.state
        with state.lock:
            mode, delay = state.mode, state.delay
        if mode == "slow":
            time.sleep(delay)
        if mode == "down":
            self._send(503, {"detail": "down for the demo"})
            return True
        return False

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_control":
            return self._send(200, state.snapshot())
        if self.path == "/healthz":
            return self._send(200, {"ok": True})
        parts = self.path.strip("/").split("/", 1)
        if len(parts) != 2 or parts[0] not in TYPES or not parts[1]:
            return self._send(404, {"detail": "no such record"})
        if self._outage():
            return None
        type, key = parts[0], unquote(parts[1])
        with state.lock:
            state.fetches[type] += 1
            version = state.versions[(type, key)]
        return self._send(200, demo_record(type, key, version))

    def do_POST(self) -> None:
        state = self.server.state
        body = self._body()
        if self.path == "/_control":
            state.control(body)
            return self._send(200, state.snapshot())
        parts = self.path.strip("/").split("/")
        if len(parts) != 2 or parts[0] not in TYPES or parts[1] != "_bulk":
            return self._send(404, {"detail": "no such endpoint"})
        if self._outage():
            return None
        type = parts[0]
        keys = [k for k in body.get("keys", []) if isinstance(k, str)]
        with state.lock:
            state.fetches[type] += len(keys)
            versions = {key: state.versions[(type, key)] for key in keys}
        return self._send(200, {"records": {key: demo_record(type, key, versions[key]) for key in keys}})


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.state = DemoState()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def start_in_thread(host: str = "127.0.0.1", port: int = 0) -> DemoServer:
    """A running server on a free port (port 0); stop it with shutdown() then server_close()."""
    server = DemoServer((host, port))
    threading.Thread(target=server.serve_forever, name="context-demo", daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    server = DemoServer((args.host, args.port))
    print(json.dumps({"message": f"context demo service on {server.url}", "logger": "context.demo"}),
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
