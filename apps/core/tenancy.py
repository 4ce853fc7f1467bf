"""Tenants: production, and the sandbox (a separate world of the same tables in the `sandbox`
PostgreSQL schema) that a request selects with the W3C baggage header `tenant=sandbox`.

The current tenant lives in a context variable. Requests and other short units of work reach the
sandbox through `tenant_activate` (one transaction, `SET LOCAL`: a persistent connection can never
carry it on); Celery tasks and commands that commit step by step through `tenant_session` (the
session's search_path, reset when they end). `migrate` builds the sandbox schema and keeps it
migrated like production (apps.core.sandbox_schema).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from urllib.parse import unquote

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction

from apps.core.errors import InvalidInput

logger = logging.getLogger(__name__)

PRODUCTION = "production"
SANDBOX = "sandbox"
TENANTS = (PRODUCTION, SANDBOX)
SANDBOX_SCHEMA = "sandbox"

BAGGAGE_HEADER = "baggage"
BAGGAGE_KEY = "tenant"
# W3C Baggage: at most 8192 bytes and 180 list-members (`list-member 0*179("," list-member)`).
BAGGAGE_MAX_BYTES = 8192
BAGGAGE_MAX_MEMBERS = 180
# The Celery message header that carries a task's tenant from the sender to the worker.
TASK_HEADER = "casehub_tenant"
# Demo logins of the sandbox are the production ones with this prefix (sandbox-merchant1 / merchant).
SANDBOX_LOGIN_PREFIX = "sandbox-"
DEMO_EMAIL_DOMAIN = "@demo.casehub.local"

_tenant: ContextVar[str] = ContextVar("casehub_tenant", default=PRODUCTION)
# True while the tenant is held by the session's search_path (tenant_session), not a transaction's.
_session: ContextVar[bool] = ContextVar("casehub_tenant_session", default=False)


def tenant_current() -> str:
    return _tenant.get()


def tenants_enabled() -> tuple[str, ...]:
    return TENANTS if settings.SANDBOX_ENABLED else (PRODUCTION,)


# Baggage ----------------------------------------------------------------------------------------

_OWS = r"[ \t]*"
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE = r"[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]*"  # baggage-octet: no space, '"', ',', ';', '\'
_MEMBER = re.compile(
    rf"(?P<key>{_TOKEN}){_OWS}={_OWS}(?P<value>{_VALUE})"
    rf"(?:{_OWS};{_OWS}{_TOKEN}(?:{_OWS}={_OWS}{_VALUE})?)*"
)


def _malformed(message: str) -> InvalidInput:
    return InvalidInput("Invalid baggage header.", errors={BAGGAGE_HEADER: [message]}, code="invalid_baggage")


def tenant_from_baggage(header: str | None) -> str:
    """The tenant a W3C `baggage` header names (member `tenant`); production when it names none.

    The whole header must be well formed (comma-separated `key=value` members, each with optional
    `;property` parts, optional whitespace around the separators), since a header we cannot read
    might hide the tenant its sender meant. Values are percent-decoded. InvalidInput (400) for a
    malformed or oversized header, an unknown tenant, or a tenant named twice differently.
    """
    if header is None or not header.strip(" \t"):
        return PRODUCTION
    if len(header.encode("utf-8", "surrogateescape")) > BAGGAGE_MAX_BYTES:
        raise _malformed(f"The header is longer than {BAGGAGE_MAX_BYTES} bytes.")
    members = header.split(",")
    if len(members) > BAGGAGE_MAX_MEMBERS:
        raise _malformed(f"The header has more than {BAGGAGE_MAX_MEMBERS} members.")
    named: set[str] = set()
    for position, member in enumerate(members, start=1):
        match = _MEMBER.fullmatch(member.strip(" \t"))
        if match is None:
            shown = member.strip(" \t")[:60]
            raise _malformed(f"Member {position} is not of the form key=value[;property]: {shown!r}.")
        if match["key"] == BAGGAGE_KEY:
            named.add(unquote(match["value"], errors="replace"))
    if not named:
        return PRODUCTION
    if len(named) > 1:
        raise _malformed(f"{BAGGAGE_KEY} is given more than once, with different values.")
    tenant = named.pop()
    if tenant not in TENANTS:
        raise InvalidInput("Unknown tenant.", code="unknown_tenant", errors={BAGGAGE_HEADER: [
            f"Unknown tenant {tenant[:60]!r}: {BAGGAGE_KEY} must be one of {', '.join(TENANTS)}."]})
    if tenant not in tenants_enabled():
        raise InvalidInput("The sandbox is not enabled here.", code="unknown_tenant", errors={
            BAGGAGE_HEADER: [f"The {tenant} tenant is not enabled on this deployment."]})
    return tenant


# Database ---------------------------------------------------------------------------------------

# The session's own default path (connection options, ALTER ROLE/DATABASE) comes after the
# sandbox schema: extensions installed there stay visible to sandbox queries.
_SANDBOX_PATH_SQL = ("SELECT current_setting('search_path'), "
                     "set_config('search_path', %s || ', ' || reset_val, %s) "
                     "FROM pg_settings WHERE name = 'search_path'")
_DEFAULT_PATH_SQL = ("SELECT current_setting('search_path'), set_config('search_path', reset_val, %s) "
                     "FROM pg_settings WHERE name = 'search_path'")
_NOWHERE_PATH_SQL = "SELECT current_setting('search_path'), set_config('search_path', 'pg_catalog', %s)"


def search_path_set(connection, tenant: str, *, local: bool) -> str:
    """Point the connection's search_path at the tenant's schema; returns the path it had.

    A tenant unknown here (a task sent by another release) gets a path with none of our tables
    on it: its work fails at the first query rather than running against production.
    """
    with connection.cursor() as cursor:
        if tenant == PRODUCTION:
            cursor.execute(_DEFAULT_PATH_SQL, [local])
        elif tenant in tenants_enabled():
            cursor.execute(_SANDBOX_PATH_SQL, [SANDBOX_SCHEMA, local])
        else:
            cursor.execute(_NOWHERE_PATH_SQL, [local])
        return cursor.fetchone()[0]


def _check(tenant: str) -> None:
    if tenant not in tenants_enabled():
        raise ValueError(f"unknown or disabled tenant {tenant!r}")


@contextmanager
def tenant_activate(tenant: str, *, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run the block as `tenant`, inside one transaction (a savepoint when one is open).

    `SET LOCAL` ends with the transaction, so a persistent connection never carries the path to
    the next request; nested in an open transaction, the previous path is put back on the way
    out. Work the block leaves for after the commit (`transaction.on_commit`, such as sending a
    task) runs as `tenant` too. Production inside production changes nothing and costs nothing.
    """
    _check(tenant)
    if tenant == PRODUCTION and _tenant.get() == PRODUCTION and not _session.get():
        yield
        return
    connection = connections[using]
    nested = connection.in_atomic_block
    token = _tenant.set(tenant)
    try:
        with transaction.atomic(using=using):
            hooks = len(connection.run_on_commit)
            previous = search_path_set(connection, tenant, local=True)
            yield
            if nested:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('search_path', %s, true)", [previous])
            _hooks_keep_tenant(connection, hooks, tenant, using)
    finally:
        _tenant.reset(token)


def _hooks_keep_tenant(connection, first: int, tenant: str, using: str) -> None:
    """Commit hooks registered since index `first` run as `tenant` once the transaction commits
    (by then the SET LOCAL is gone): a task sent on commit carries the tenant, and a hook that
    queries reads the tenant's tables."""
    hooks = connection.run_on_commit
    for index in range(first, len(hooks)):
        savepoints, func, robust = hooks[index]
        if not hasattr(func, "casehub_tenant"):  # a nested block's hooks keep their own tenant
            hooks[index] = (savepoints, _as_tenant(func, tenant, using), robust)


def _as_tenant(func, tenant: str, using: str):
    @functools.wraps(func)
    def run():
        with tenant_activate(tenant, using=using):
            return func()

    run.casehub_tenant = tenant
    return run


def _session_enter(tenant: str) -> None:
    """Hold `tenant` on this context's connections until _session_exit, across transactions."""
    _tenant.set(tenant)
    _session.set(True)
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None:
            search_path_set(connection, tenant, local=False)


def _session_exit() -> None:
    was = _session.get()
    _tenant.set(PRODUCTION)
    _session.set(False)
    if not was:
        return
    for connection in connections.all(initialized_only=True):
        if connection.connection is None:
            continue
        try:
            with connection.cursor() as cursor:
                cursor.execute("RESET search_path")
        except Exception:
            # A connection whose path cannot be put back must never serve another unit of work.
            logger.warning("search_path not reset; closing the connection", exc_info=True)
            connection.close()


@contextmanager
def tenant_session(tenant: str) -> Iterator[None]:
    """Run the block as `tenant` across any number of transactions (a task, a command); the
    connections' search_path is reset when it ends, however it ends. Not for requests."""
    _check(tenant)
    outer, outer_session = _tenant.get(), _session.get()
    if outer != PRODUCTION and not outer_session:
        # Its RESET at the end would also undo the transaction's SET LOCAL for what follows.
        raise RuntimeError("tenant_session inside tenant_activate")
    if tenant == PRODUCTION and outer == PRODUCTION:
        yield
        return
    _session_enter(tenant)
    try:
        yield
    finally:
        _session_exit()
        if outer_session:
            _session_enter(outer)


def _on_connection_created(sender, connection, **kwargs) -> None:
    # A connection opened during a session (the old one was closed as obsolete or broken) joins it.
    if _session.get() and _tenant.get() != PRODUCTION:
        search_path_set(connection, _tenant.get(), local=False)


# Celery -----------------------------------------------------------------------------------------

def _on_before_task_publish(sender=None, headers=None, **kwargs) -> None:
    if headers is None:
        return
    tenant = _tenant.get()
    if tenant == PRODUCTION:
        headers.pop(TASK_HEADER, None)
    else:
        headers[TASK_HEADER] = tenant


def _on_task_prerun(sender=None, task=None, **kwargs) -> None:
    request = task.request
    if request.is_eager:  # runs in its sender's context, which already holds the tenant
        return
    tenant = getattr(request, TASK_HEADER, None) or PRODUCTION
    if tenant == PRODUCTION:
        _session_exit()
        return
    if tenant not in tenants_enabled():
        logger.error("task %s names tenant %r, which is unknown or disabled here", task.name, tenant)
    _session_enter(tenant)


def _on_task_postrun(sender=None, task=None, **kwargs) -> None:
    if task is not None and task.request.is_eager:
        return
    _session_exit()


# Caches -----------------------------------------------------------------------------------------

def tenant_key(name: str, *, sep: str = ":") -> str:
    """The current tenant's name for something kept outside PostgreSQL (a Redis key or lease; a
    channel layer group with sep="."): production's names are unchanged, the sandbox's prefixed."""
    tenant = _tenant.get()
    return name if tenant == PRODUCTION else f"{tenant}{sep}{name}"


def cache_key(key: str, key_prefix: str, version: int) -> str:
    """CACHES KEY_FUNCTION: Django's own key for production, the sandbox's apart from it."""
    return tenant_key(f"{key_prefix}:{version}:{key}")


class _TenantKeyedCache(dict):
    """ContentTypeManager's per-process cache, keyed by (tenant, alias) where Django keys it by
    alias: each schema numbers its content types itself (test flushes renumber production's)."""

    def __getitem__(self, alias):
        return super().__getitem__((_tenant.get(), alias))

    def __setitem__(self, alias, value):
        super().__setitem__((_tenant.get(), alias), value)

    def __contains__(self, alias):
        return super().__contains__((_tenant.get(), alias))

    def get(self, alias, default=None):
        return super().get((_tenant.get(), alias), default)

    def setdefault(self, alias, default=None):
        return super().setdefault((_tenant.get(), alias), default)


def content_types_cached_per_tenant() -> None:
    from django.contrib.contenttypes.models import ContentType

    manager = ContentType.objects
    if not isinstance(manager._cache, _TenantKeyedCache):
        manager._cache = _TenantKeyedCache()


# Outbound HTTP ----------------------------------------------------------------------------------

def outbound_drop_baggage(request) -> None:
    """httpx request hook: other services never see our tenant (or any baggage we were sent)."""
    request.headers.pop(BAGGAGE_HEADER, None)


# Demo -------------------------------------------------------------------------------------------

@contextmanager
def sandbox_demo_logins() -> Iterator[None]:
    """Inside a sandbox session: the demo seeders find and create their users under the production
    demo names, which the sandbox shows with the `sandbox-` prefix (sandbox-merchant1 / merchant).
    Idempotent: a second seeding finds the users it made the first time."""
    from django.contrib.auth import get_user_model
    from django.db.models import Value
    from django.db.models.functions import Concat, Substr

    if _tenant.get() != SANDBOX:
        raise RuntimeError("sandbox demo logins outside the sandbox")
    demo = get_user_model().objects.filter(email__endswith=DEMO_EMAIL_DOMAIN)
    demo.filter(username__startswith=SANDBOX_LOGIN_PREFIX).update(
        username=Substr("username", len(SANDBOX_LOGIN_PREFIX) + 1))
    try:
        yield
    finally:
        demo.exclude(username__startswith=SANDBOX_LOGIN_PREFIX).update(
            username=Concat(Value(SANDBOX_LOGIN_PREFIX), "username"))


def install() -> None:
    """Connect the tenancy to Django and Celery (CoreConfig.ready)."""
    from celery import signals as celery_signals
    from django.db.backends.signals import connection_created

    from apps.core import sandbox_schema

    content_types_cached_per_tenant()
    connection_created.connect(_on_connection_created, dispatch_uid="casehub_tenant_connection")
    sandbox_schema.install()
    celery_signals.before_task_publish.connect(_on_before_task_publish, dispatch_uid="casehub_tenant_publish")
    celery_signals.task_prerun.connect(_on_task_prerun, dispatch_uid="casehub_tenant_prerun")
    celery_signals.task_postrun.connect(_on_task_postrun, dispatch_uid="casehub_tenant_postrun")
