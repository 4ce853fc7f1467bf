"""Selective dynamic-field search over many cases, through the API's filter path, with the GIN
`jsonb_path_ops` index and with it dropped (see ../shared/BENCHMARKS.md).

Cases are generated in PostgreSQL (`INSERT ... SELECT generate_series`), the GIN index is
built after the load (faster than maintaining it row by row) and `VACUUM ANALYZE` runs before
measuring, so the planner sees a clean index. Each query is `CaseFilterSet` with
`field.order_id=<one order>` over the list view's queryset, evaluated as the API's first page.

Extra keys `api_p50_ms` / `api_p95_ms` time the whole request through `CaseViewSet` (an
agent's permissions, the page's COUNT, serialisation and JSON rendering) with the index: what
a client sees apart from the network and the server's request parsing.

`api_combined_p95_ms` times the same endpoint with a broad combination, a dynamic field and a
status (`?field.reason=late&status=new`, newest first, about 1 case in 12, each pair chosen at
random among those that hold cases), so the page's count meets its cap. The first request of
each pair counts (`api_combined_cold_*`, 12 requests); the list then remembers that the pair is
over the cap (`API_CAPPED_COUNT_CACHE_SECONDS`), as it does for agents re-reading a list.
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import emit, parse_args, percentile, setup, teardown

GIN_INDEX = "case_fields_gin"
REASONS = ["late", "missing_items", "damaged", "wrong_item"]
STATUSES = ["new", "assigned", "in_progress", "pending_customer", "resolved", "closed"]
# Case g has REASONS[g % 4] and STATUSES[g % 6] (INSERT_CASES): a pair holds cases when both
# indexes have g's parity, each such pair one case in 12.
COMBINED_PAIRS = [(reason, status) for r, reason in enumerate(REASONS) for s, status in enumerate(STATUSES)
                  if r % 2 == s % 2]

INSERT_CASES = """
INSERT INTO cases_case (id, queue_id, status, priority, channel, source, subject, merchant_ref, customer_ref,
                        delivery_ref, signal_type, fields, location, legacy_id, created_at, updated_at)
SELECT gen_random_uuid(), %(queue)s,
       (ARRAY['new','assigned','in_progress','pending_customer','resolved','closed'])[1 + g %% 6],
       1 + g %% 4, (ARRAY['chat','email','phone','web'])[1 + g %% 4], 'api', 'Case ' || g,
       'm-' || (1000 + g %% 5000), 'c-' || g, 'dl-' || g, '',
       jsonb_build_object(
           'order_id', 'ORD-' || g,
           'order_total', round(((g::bigint * 7919) %% 25000) / 100.0, 2),
           'reason', (ARRAY['late','missing_items','damaged','wrong_item'])[1 + g %% 4],
           'items_missing', g %% 5,
           'vip', g %% 50 = 0,
           'carrier', (ARRAY['bike','car','scooter'])[1 + g %% 3]),
       'casehub', NULL, now() - make_interval(secs => g), now()
FROM generate_series(%(start)s, %(stop)s) AS g
"""


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    n_cases = 20_000 if args.quick else 1_000_000
    n_indexed = 200 if args.quick else 500
    n_unindexed = 10 if args.quick else 25
    db_name = setup("case_search")
    try:
        result = run(n_cases, n_indexed, n_unindexed)
    finally:
        teardown(db_name, keep=args.keep_db)
    emit(result)


def run(n_cases: int, n_indexed: int, n_unindexed: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.http import QueryDict
    from rest_framework.test import APIRequestFactory, force_authenticate

    from apps.cases import services
    from apps.cases.api.filters import CaseFilterSet
    from apps.cases.api.views import CaseViewSet
    from apps.cases.selectors import case_list
    from apps.core.api.pagination import count_cap

    queue = services.queue_create(
        slug="bench", name="Bench", transitions={"new": ["resolved"], "resolved": []},
        fields_schema={"type": "object", "properties": {"order_id": {"type": "string"}}},
    )
    load_started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {GIN_INDEX}")
        step = 250_000
        for start in range(1, n_cases + 1, step):
            cursor.execute(INSERT_CASES, {"queue": queue.pk, "start": start,
                                          "stop": min(n_cases, start + step - 1)})
        cursor.execute(f"CREATE INDEX {GIN_INDEX} ON cases_case USING gin (fields jsonb_path_ops)")
        cursor.execute("VACUUM ANALYZE cases_case")
    load_s = time.perf_counter() - load_started

    rng = random.Random(7)

    def search(order_no: int) -> float:
        data = QueryDict(mutable=True)
        data["field.order_id"] = f"ORD-{order_no}"
        started = time.perf_counter()
        qs = CaseFilterSet(data=data, queryset=case_list().order_by("-created_at", "id")).qs
        rows = list(qs[:50])  # the API's first page
        elapsed = (time.perf_counter() - started) * 1000
        assert len(rows) == 1 and rows[0].fields["order_id"] == f"ORD-{order_no}"
        return elapsed

    agent = get_user_model().objects.create_user("bench-agent", password="x", is_staff=True)
    agent.groups.add(Group.objects.get(name="agent"))
    list_view = CaseViewSet.as_view({"get": "list"})
    factory = APIRequestFactory()

    def api_search(order_no: int) -> float:
        request = factory.get("/api/v1/cases/", {"field.order_id": f"ORD-{order_no}"})
        force_authenticate(request, user=agent)
        started = time.perf_counter()
        response = list_view(request)
        response.render()
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200 and response.data["count"] == 1, response.data
        return elapsed

    for _ in range(20):
        search(rng.randint(1, n_cases))
    indexed = [search(rng.randint(1, n_cases)) for _ in range(n_indexed)]
    cap = count_cap()

    def api_combined(reason: str, status: str) -> float:
        request = factory.get("/api/v1/cases/", {"field.reason": reason, "status": status})
        force_authenticate(request, user=agent)
        started = time.perf_counter()
        response = list_view(request)
        response.render()
        elapsed = (time.perf_counter() - started) * 1000
        data = response.data
        k = next(k for k in range(12) if REASONS[k % 4] == reason and STATUSES[k % 6] == status)
        matching = len(range(k or 12, n_cases + 1, 12))
        assert response.status_code == 200, data
        assert (data["count"], data["count_capped"]) == (min(matching, cap), matching > cap), data
        rows = data["results"]
        assert rows and all(row["fields"]["reason"] == reason and row["status"] == status for row in rows)
        created = [row["created_at"] for row in rows]
        assert created == sorted(created, reverse=True)
        return elapsed

    api_search(rng.randint(1, n_cases))  # the user's permissions are cached from here on
    api = [api_search(rng.randint(1, n_cases)) for _ in range(n_indexed // 2)]
    cold = [api_combined(*pair) for pair in COMBINED_PAIRS]
    combined = [api_combined(*rng.choice(COMBINED_PAIRS)) for _ in range(n_indexed // 2)]
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX {GIN_INDEX}")
        cursor.execute("ANALYZE cases_case")
    search(rng.randint(1, n_cases))  # warm the cache for the sequential path too
    unindexed = [search(rng.randint(1, n_cases)) for _ in range(n_unindexed)]
    indexed_p50 = percentile(indexed, 50)
    unindexed_p50 = percentile(unindexed, 50)
    return {
        "cases": n_cases,
        "indexed_p50_ms": round(indexed_p50, 3),
        "indexed_p95_ms": round(percentile(indexed, 95), 3),
        "unindexed_p50_ms": round(unindexed_p50, 3),
        "unindexed_p95_ms": round(percentile(unindexed, 95), 3),
        "speedup": round(unindexed_p50 / indexed_p50, 1),
        "api_p50_ms": round(percentile(api, 50), 3),
        "api_p95_ms": round(percentile(api, 95), 3),
        "api_combined_p50_ms": round(percentile(combined, 50), 3),
        "api_combined_p95_ms": round(percentile(combined, 95), 3),
        "api_combined_cold_p50_ms": round(percentile(cold, 50), 3),
        "api_combined_cold_max_ms": round(max(cold), 3),
        "queries_indexed": n_indexed,
        "queries_unindexed": n_unindexed,
        "load_s": round(load_s, 1),
    }


if __name__ == "__main__":
    main()
