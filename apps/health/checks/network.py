"""Network checks: HTTP request, gRPC Health Checking Protocol, TCP connect."""

from __future__ import annotations

import re
import socket
import threading
from urllib.parse import urlsplit

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc

from apps.core.tenancy import outbound_drop_baggage
from apps.health.checks.base import Check, CheckOutcome, register

HTTP_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_client_lock = threading.Lock()
_client: httpx.Client | None = None


def http_client() -> httpx.Client:
    """One pooled client per process: building a client (TLS context) per check costs ~10 ms of CPU."""
    global _client
    with _client_lock:
        if _client is None or _client.is_closed:
            _client = httpx.Client(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
                follow_redirects=False,
                headers={"User-Agent": "casehub-health/1"},
                # Other services never see a tenant: baggage is dropped, even one a check sets.
                event_hooks={"request": [outbound_drop_baggage]},
            )
        return _client


def url_errors(url: str) -> list[str]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ["Enter a valid http(s) URL with a host."]
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        return ["The URL has an invalid port."]
    return []


@register
class HttpCheck(Check):
    """Request a URL; success when the status is expected (and the body matches, if asked)."""

    type_name = "http"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["url"],
        "properties": {
            "url": {"type": "string", "minLength": 1},
            "method": {"enum": HTTP_METHODS},
            "expected_status": {"type": "array", "minItems": 1,
                                "items": {"type": "integer", "minimum": 100, "maximum": 599}},
            "body_regex": {"type": "string"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }

    @classmethod
    def validate_params(cls, params):
        errors = {}
        if isinstance(params.get("url"), str) and (problems := url_errors(params["url"])):
            errors["url"] = problems
        if "body_regex" in params:
            errors.update(regex_errors("body_regex", params["body_regex"]))
        return errors

    def run(self) -> CheckOutcome:
        p = self.params
        expected = p.get("expected_status") or [200]
        response = http_client().request(p.get("method", "GET"), p["url"], headers=p.get("headers") or {},
                                         timeout=self.ctx.timeout_s)
        if response.status_code not in expected:
            return CheckOutcome.failure(f"HTTP {response.status_code}, expected {expected}")
        if p.get("body_regex") and not re.search(p["body_regex"], response.text):
            return CheckOutcome.failure(
                f"HTTP {response.status_code}, body does not match {p['body_regex']!r}")
        return CheckOutcome.success(f"HTTP {response.status_code}")


@register
class GrpcCheck(Check):
    """The standard gRPC Health Checking Protocol (grpc.health.v1.Health/Check)."""

    type_name = "grpc"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["target"],
        "properties": {
            "target": {"type": "string", "pattern": r"^[^\s:]+:\d{1,5}$"},
            "service": {"type": "string"},
            "tls": {"type": "boolean"},
        },
    }

    def run(self) -> CheckOutcome:
        target = self.params["target"]
        if self.params.get("tls"):
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials())
        else:
            channel = grpc.insecure_channel(target)
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=self.params.get("service", "")),
                                   timeout=self.ctx.timeout_s)
            except grpc.RpcError as exc:
                return CheckOutcome.failure(f"gRPC {exc.code().name}: {exc.details()}")
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return CheckOutcome.success(status)
        return CheckOutcome.failure(status)


@register
class TcpCheck(Check):
    """Open (and close) a TCP connection."""

    type_name = "tcp"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["host", "port"],
        "properties": {
            "host": {"type": "string", "minLength": 1},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        },
    }

    def run(self) -> CheckOutcome:
        host, port = self.params["host"], self.params["port"]
        try:
            with socket.create_connection((host, port), timeout=self.ctx.timeout_s):
                pass
        except OSError as exc:
            return CheckOutcome.failure(f"cannot connect to {host}:{port}: {exc}")
        return CheckOutcome.success(f"connected to {host}:{port}")


def regex_errors(field: str, pattern) -> dict[str, list[str]]:
    if not isinstance(pattern, str):
        return {}
    try:
        re.compile(pattern)
    except re.error as exc:
        return {field: [f"Invalid regular expression: {exc}"]}
    return {}
