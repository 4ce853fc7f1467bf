"""The sandbox schema, built and kept migrated by `migrate`: after production's migrations, the
same migrations are applied with the sandbox schema first on the search_path.

A fresh database (production had no migration applied, the sandbox has no table) takes a short
cut: the statements production's migrate ran are replayed in the sandbox in one transaction,
which gives the same schema and rows for a fraction of the time the migration framework spends
rendering model states (test databases are built this way once per session).
"""

from __future__ import annotations

import logging
import re
import time

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from apps.core.tenancy import (
    PRODUCTION,
    SANDBOX,
    SANDBOX_SCHEMA,
    search_path_set,
    tenant_activate,
    tenant_current,
    tenant_session,
)

logger = logging.getLogger(__name__)


class _Recording:
    """An execute wrapper that keeps every statement a migrate runs on its connection."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, object, bool]] = []
        self.failed = False

    def __call__(self, execute, sql, params, many, context):
        try:
            result = execute(sql, params, many, context)
        except Exception:
            self.failed = True
            raise
        self.statements.append((sql, params, many))
        return result


_recordings: dict[str, _Recording] = {}
_SAVEPOINT = re.compile(r"\s*(SAVEPOINT|RELEASE SAVEPOINT)\b", re.IGNORECASE)
# What a replay could not repeat faithfully in the sandbox: a statement that failed and was rolled
# back to a savepoint, a name qualified by another schema, a path change, work outside a transaction.
_NOT_REPLAYABLE = re.compile(
    r"ROLLBACK\s+TO|\bpublic\s*\.|\"public\"\s*\.|search_path|CONCURRENTLY|\bVACUUM\b", re.IGNORECASE)


def _sandbox_empty(connection) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "WHERE n.nspname = %s", [SANDBOX_SCHEMA])
        return cursor.fetchone()[0] == 0


def _replay(connection, recording: _Recording) -> bool:
    """Run the recorded statements in the (empty) sandbox schema; False, with nothing changed,
    when they cannot be replayed faithfully."""
    statements = [s for s in recording.statements if not _SAVEPOINT.match(s[0])]
    if recording.failed or any(_NOT_REPLAYABLE.search(sql) for sql, _, _ in statements):
        return False
    try:
        with tenant_activate(SANDBOX), connection.cursor() as cursor:
            for sql, params, many in statements:
                if many:
                    cursor.executemany(sql, params)
                else:
                    cursor.execute(sql, params)
    except DatabaseError:
        logger.warning("sandbox schema: replay failed; applying the migrations instead", exc_info=True)
        return False
    return True


def _latest_applied(graph, applied) -> list[tuple[str, str | None]]:
    """Per app, the latest of `applied` in the graph's order; (app, None) for an app with none."""
    order: dict[tuple[str, str], int] = {}
    for leaf in graph.leaf_nodes():
        for node in graph.forwards_plan(leaf):
            order.setdefault(node, len(order))
    latest: dict[str, tuple[str, str]] = {}
    for node in applied:
        if node in order and (node[0] not in latest or order[node] > order[latest[node[0]]]):
            latest[node[0]] = node
    return [latest.get(app, (app, None)) for app in sorted({node[0] for node in order})]


def sandbox_migrate(*, using: str = DEFAULT_DB_ALIAS, verbosity: int = 1, stdout=None,
                    recording: _Recording | None = None) -> int:
    """Bring the sandbox schema to the migrations production has applied; how many it applied.

    The migrations run on the same connection with the sandbox schema first on the path, so
    unqualified CREATEs (tables, and the functions and triggers of RunSQL) land in it and
    sandbox.django_migrations records them; production's schema stays on the path after it for
    extensions. Then the post-migrate handlers run for the sandbox (content types, permissions,
    role groups). `recording`: production's statements of this migrate, replayed instead when
    the sandbox is empty.
    """
    from django.apps import apps as global_apps
    from django.core.management.sql import emit_post_migrate_signal
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.loader import MigrationLoader
    from django.db.migrations.recorder import MigrationRecorder

    started = time.perf_counter()
    connection = connections[using]
    production = MigrationLoader(connection, ignore_no_migrations=True).applied_migrations
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE SCHEMA IF NOT EXISTS "{SANDBOX_SCHEMA}"')
    replayed = recording is not None and _sandbox_empty(connection) and _replay(connection, recording)
    with tenant_session(SANDBOX):
        # With production's schema still on the path, the recorder would find production's table.
        with connection.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{SANDBOX_SCHEMA}"')
        MigrationRecorder(connection).ensure_schema()
        search_path_set(connection, SANDBOX, local=False)
        executor = MigrationExecutor(connection)
        targets = _latest_applied(executor.loader.graph, production)
        plan = executor.migration_plan(targets)
        if plan:
            executor.migrate(targets, plan=plan)
        if plan or replayed:
            emit_post_migrate_signal(max(verbosity - 1, 0), False, using, apps=global_apps, plan=plan)
    if verbosity and stdout is not None and (plan or replayed):
        how = f"{len(production)} migrations replayed" if replayed else f"{len(plan)} migrations applied"
        stdout.write(f"  Sandbox schema: {how} in {time.perf_counter() - started:.1f}s\n")
    return len(production) if replayed else len(plan)


def _for_us(using: str, kwargs: dict) -> bool:
    # Once per `migrate` of the default database (a flush sends post_migrate without a plan), and
    # never for the sandbox's own post-migrate.
    return ("plan" in kwargs and using == DEFAULT_DB_ALIAS and settings.SANDBOX_ENABLED
            and tenant_current() == PRODUCTION)


def _on_pre_migrate(sender, using=DEFAULT_DB_ALIAS, **kwargs) -> None:
    from django.db.migrations.recorder import MigrationRecorder

    if not _for_us(using, kwargs) or using in _recordings:
        return
    connection = connections[using]
    if MigrationRecorder(connection).applied_migrations() or not _sandbox_empty(connection):
        return
    _recordings[using] = recording = _Recording()
    connection.execute_wrappers.append(recording)


def _on_post_migrate(sender, using=DEFAULT_DB_ALIAS, verbosity=1, **kwargs) -> None:
    from django.apps import apps

    if not _for_us(using, kwargs):
        return
    recording = _recordings.get(using)
    if recording is not None and recording in connections[using].execute_wrappers:
        connections[using].execute_wrappers.remove(recording)  # production's migrations are done
    if sender.label == [a for a in apps.get_app_configs() if a.models_module][-1].label:
        _recordings.pop(using, None)
        sandbox_migrate(using=using, verbosity=verbosity, stdout=kwargs.get("stdout"), recording=recording)


def install() -> None:
    from django.db.models.signals import post_migrate, pre_migrate

    pre_migrate.connect(_on_pre_migrate, dispatch_uid="casehub_sandbox_record")
    post_migrate.connect(_on_post_migrate, dispatch_uid="casehub_sandbox_migrate")
