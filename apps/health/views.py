"""/metrics: Prometheus text of every app, optionally behind a bearer token (settings.METRICS_TOKEN)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from apps.core.metrics import render_metrics


def bearer_token_matches(request, expected: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())


@never_cache
@require_GET
def metrics(request):
    # Open by default like most Prometheus endpoints (internal network); METRICS_TOKEN locks it down.
    token = settings.METRICS_TOKEN
    if token and not bearer_token_matches(request, token):
        response = HttpResponse("Unauthorized: send Authorization: Bearer <METRICS_TOKEN>\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
