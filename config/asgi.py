"""ASGI entry point: HTTP goes to Django, websockets to the Channels routes of the apps."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Settings give an ASGI process a connection pool (see DB_POOL_MAX_SIZE there). The flag is for
# this process's settings only: a process started from here (a test's worker, a benchmark that
# forks) must not inherit it, or it would share pooled connections across a fork.
_asgi_flag_ours = "CASEHUB_ASGI" not in os.environ
os.environ.setdefault("CASEHUB_ASGI", "1")
django.setup(set_prefix=False)  # what get_asgi_application() does; must run before importing consumers
if _asgi_flag_ours:
    del os.environ["CASEHUB_ASGI"]

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from apps.assignment.api.fastpoll import PollFastPath  # noqa: E402
from config.heap import ASGIRequestHandler, ServerHeap  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

django_asgi_app = ASGIRequestHandler()

application = ServerHeap(ProtocolTypeRouter(
    {
        # The workspace's short poll skips the Django request cycle when Redis alone can answer.
        "http": PollFastPath(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
))
