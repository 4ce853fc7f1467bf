"""Support Hub API under load on the real ASGI server: merchants' clients reading their case lists
and threads (see ../shared/BENCHMARKS.md).

Data (full): 10,000 merchants with one user each; 500,000 cases spread over them Zipf-like (the
largest merchant has 9,861, the median 26); 2,000,000 messages (merchants' mail with and without
quoted history, agents' emailed replies, internal notes, hub posts; bodies as the services store
them); read watermarks, out-of-order read marks and a few attachment rows. All of it is written by
`INSERT ... SELECT` inside PostgreSQL with every constraint and trigger in force, then
`VACUUM ANALYZE`; `load_s` times it all.

The web process is uvicorn serving `config.asgi:application` with the flags `make run` uses, plus
`--workers 2` (one per core), on loopback. Clients are httpx (async, keep-alive) with knox tokens;
their connections are spread over the worker processes in turn, as a round-robin balancer would
(left to the kernel, two persistent connections land on the same worker half of the time).

Phase 1: 50 clients at one request per second each (their case list and a thread of one of their
own cases, alternately) gives the p50/p99 keys. Phase 2: closed-loop concurrency steps over a
rotating pool of 200 users (each stays under the per-user throttle) until a step misses a goal;
`max_rps` is the best step that met both goals without errors. The CPU used by the client, the
web workers and PostgreSQL is reported per phase, since all three share the two cores.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    cpu_seconds,
    emit,
    parse_args,
    percentile,
    postgres_pids,
    settle_client_heap,
    setup,
    teardown,
)

GOALS_MS = {"list": 50.0, "thread": 80.0}  # p99 of the case list and of a thread
LIST_URL = "/api/v1/hub/cases/"


@dataclass(frozen=True)
class Shape:
    merchants: int
    cases: int
    messages: int
    agents: int
    clients: int  # phase 1, one user each
    pool: int  # phase 2: users the closed-loop clients rotate over
    warmup_s: float
    phase1_s: float
    step_s: float
    steps: tuple[int, ...]  # phase 2 concurrency levels, in order


FULL = Shape(merchants=10_000, cases=500_000, messages=2_000_000, agents=40, clients=50, pool=200,
             warmup_s=5.0, phase1_s=30.0, step_s=10.0, steps=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32))
QUICK = Shape(merchants=50, cases=2_000, messages=8_000, agents=5, clients=50, pool=50,
              warmup_s=1.0, phase1_s=5.0, step_s=1.5, steps=(1, 2, 4, 8))


def main() -> None:
    def extra(parser):
        parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
        parser.add_argument("--explain", action="store_true",
                            help="print the endpoints' query plans to stderr even when the goals are met")

    args = parse_args(__doc__.splitlines()[0], extra)
    db_name = setup("support_hub")
    try:
        result = run(QUICK if args.quick else FULL, db_name, workers=args.workers, explain=args.explain)
    finally:
        teardown(db_name, keep=args.keep_db)
    emit(result)
    if result["errors"]:
        sys.exit(f"phase 1 had {result['errors']} failed requests: {result['error_statuses']}")


# Data -----------------------------------------------------------------------------------------

# Per case (k = its number, oldest first): merchant, messages, age and spacing of its messages.
PLAN_SQL = """
CREATE TEMP TABLE bench_plan (k int PRIMARY KEY, merchant int NOT NULL, msgs int NOT NULL,
                              age_s int NOT NULL, step_s int NOT NULL,
                              id uuid NOT NULL DEFAULT gen_random_uuid())
"""
CREATED = "(%(now)s - p.age_s * interval '1 second')"
SUBJECT = "'Order #' || (100000 + p.k) || ': ' || (%(subjects)s::text[])[1 + p.k %% 6]"
SUBJECTS = ["late delivery", "missing items", "wrong address", "damaged bag", "refund request",
            "courier did not arrive"]

MERCHANTS_SQL = """
INSERT INTO merchants_merchant (id, external_id, name, is_active, created_at)
SELECT gen_random_uuid(), 'bm-' || g, 'Merchant ' || g, true, %(now)s FROM generate_series(0, %(n)s - 1) g;
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active,
                       date_joined)
SELECT '!bench', false, 'bm-' || g || '-owner', 'Owner', 'of merchant ' || g, 'owner@bm-' || g || '.example',
       false, true, %(now)s
FROM generate_series(0, %(n)s - 1) g;
INSERT INTO merchants_merchantuser (user_id, merchant_id, created_at)
SELECT u.id, m.id, %(now)s
FROM merchants_merchant m JOIN auth_user u ON u.username = m.external_id || '-owner';
CREATE TEMP TABLE bench_merchant AS
SELECT substr(m.external_id, 4)::int AS m, m.external_id AS ext, u.id AS user_id, u.email,
       u.first_name || ' ' || u.last_name AS name
FROM merchants_merchant m
JOIN merchants_merchantuser mu ON mu.merchant_id = m.id
JOIN auth_user u ON u.id = mu.user_id;
ALTER TABLE bench_merchant ADD PRIMARY KEY (m);
"""

# Old cases are closed; recent ones in every state. None is assigned: the capacity trigger still
# runs on every statement, over rows that give no agent any load.
CASES_SQL = f"""
INSERT INTO cases_case (id, queue_id, status, priority, channel, source, subject, merchant_ref, customer_ref,
                        delivery_ref, signal_type, fields, location, legacy_id, created_at, updated_at,
                        first_response_at, resolved_at, assigned_weight)
SELECT p.id, %(queue)s, s.status, 1 + p.k %% 4, 'email', 'email', {SUBJECT}, bm.ext, 'c-' || p.k,
       'dl-' || p.k, '', jsonb_build_object('order_id', 'ORD-' || (100000 + p.k)), 'casehub', NULL,
       {CREATED}, s.last_at, CASE WHEN p.msgs > 1 THEN {CREATED} + p.step_s * interval '1 second' END,
       CASE WHEN s.status IN ('resolved', 'closed') THEN s.last_at END, 0
FROM bench_plan p
JOIN bench_merchant bm ON bm.m = p.merchant
CROSS JOIN LATERAL (
    SELECT {CREATED} + (p.msgs - 1) * p.step_s * interval '1 second' AS last_at,
           CASE WHEN p.age_s > 14 * 86400 THEN CASE WHEN p.k %% 5 = 0 THEN 'closed' ELSE 'resolved' END
                ELSE (ARRAY['new', 'in_progress', 'pending_customer', 'resolved'])[1 + p.k %% 4] END AS status
) s
WHERE p.k >= %(lo)s AND p.k < %(hi)s
"""

# Message s of case k: the merchant's first mail, then agents' replies (every fifth an internal
# note) answered by the merchant's mail (quoted history kept) or hub posts. Ids follow s within a
# case, as they do when messages arrive one by one (watermarks compare ids).
MESSAGES_SQL = f"""
WITH x AS (
    SELECT p.id AS case_id, p.k, p.merchant, s, {SUBJECT} AS subject,
           {CREATED} + (s - 1) * p.step_s * interval '1 second' AS at,
           'bm' || p.k || '.1@bm-' || p.merchant || '.example' AS first_mail_id,
           CASE WHEN s = 1 THEN 'first'
                WHEN s %% 2 = 0 THEN CASE WHEN (p.k + s) %% 10 = 0 THEN 'note' ELSE 'agent' END
                WHEN (p.k + s) %% 4 = 1 THEN 'hub' ELSE 'reply' END AS kind,
           1 + (p.k + s) %% 4 AS variant,
           1 + (p.k + s) %% %(agents)s AS agent
    FROM bench_plan p CROSS JOIN LATERAL generate_series(1, p.msgs) s
    WHERE p.k >= %(lo)s AND p.k < %(hi)s
)
INSERT INTO cases_message (case_id, direction, source, sender_user_id, sender_address, sender_name,
                           to_addresses, cc_addresses, subject, message_id, in_reply_to, "references",
                           text_body, html_body, latest_reply_text, latest_reply_html, has_quoted_history,
                           merchant_visible, is_auto_reply, is_bounce, sent_at, created_at,
                           dropped_attachments, delivery_status, delivery_attempts, delivery_error,
                           delivered_at, delivery_due_at)
SELECT x.case_id, t.direction, t.source,
       CASE t.source WHEN 'hub' THEN bm.user_id WHEN 'agent' THEN ba.user_id END,
       CASE t.source WHEN 'agent' THEN %(from_email)s ELSE bm.email END,
       CASE t.source WHEN 'agent' THEN ba.name WHEN 'hub' THEN bm.name ELSE 'Store manager' END,
       CASE x.kind WHEN 'agent' THEN ARRAY[bm.email] WHEN 'first' THEN ARRAY[%(support)s]
                   WHEN 'reply' THEN ARRAY[%(support)s] ELSE '{{}}' END,
       '{{}}',
       CASE x.kind WHEN 'agent' THEN 'Re: ' || x.subject || ' [case:' || x.case_id || ']'
                   WHEN 'reply' THEN 'Re: ' || x.subject ELSE x.subject END,
       CASE x.kind WHEN 'first' THEN x.first_mail_id
                   WHEN 'reply' THEN 'bm' || x.k || '.' || x.s || '@bm-' || x.merchant || '.example'
                   WHEN 'agent' THEN md5(x.k || '.' || x.s) || '@' || %(domain)s ELSE '' END,
       CASE WHEN x.kind IN ('agent', 'reply') THEN x.first_mail_id ELSE '' END,
       CASE WHEN x.kind IN ('agent', 'reply') THEN ARRAY[x.first_mail_id] ELSE '{{}}' END,
       replace(t.text_body, '#ORDER#', (100000 + x.k)::text),
       replace(t.html_body, '#ORDER#', (100000 + x.k)::text),
       replace(t.latest_reply_text, '#ORDER#', (100000 + x.k)::text),
       replace(t.latest_reply_html, '#ORDER#', (100000 + x.k)::text),
       t.has_quoted_history, t.merchant_visible, false, false, x.at, x.at, '[]',
       CASE x.kind WHEN 'agent' THEN 'sent' ELSE '' END, CASE x.kind WHEN 'agent' THEN 1 ELSE 0 END, '',
       CASE x.kind WHEN 'agent' THEN x.at + interval '2 seconds' END, CASE x.kind WHEN 'agent' THEN x.at END
FROM x
JOIN bench_kind t ON t.kind = x.kind AND t.variant = x.variant
JOIN bench_merchant bm ON bm.m = x.merchant
JOIN bench_agent ba ON ba.a = x.agent
ORDER BY x.k, x.s
"""

# Watermarks: a third of the cases read to the end, a third half-way (the rest never opened); on
# some half-read cases the last message was read out of order.
READ_SQL = """
INSERT INTO merchants_casereadstate (user_id, case_id, read_up_to, updated_at)
SELECT bm.user_id, p.id, m.id, %(now)s
FROM bench_plan p
JOIN bench_merchant bm ON bm.m = p.merchant
CROSS JOIN LATERAL (SELECT id FROM cases_message WHERE case_id = p.id ORDER BY id
                    OFFSET CASE WHEN p.k %% 3 = 1 THEN p.msgs - 1 ELSE (p.msgs - 1) / 2 END LIMIT 1) m
WHERE p.k %% 3 <> 0;
INSERT INTO merchants_messageread (user_id, message_id, case_id, created_at)
SELECT bm.user_id, m.id, p.id, %(now)s
FROM bench_plan p
JOIN bench_merchant bm ON bm.m = p.merchant
CROSS JOIN LATERAL (SELECT id FROM cases_message WHERE case_id = p.id ORDER BY id DESC LIMIT 1) m
WHERE p.k %% 3 = 2 AND p.k %% 5 = 0 AND p.msgs >= 3;
INSERT INTO cases_attachment (message_id, case_id, filename, content_type, size, sha256, file, content_id,
                              inline, created_at)
SELECT m.id, m.case_id, 'receipt-' || m.id || '.pdf', 'application/pdf', 20000 + m.id %% 50000,
       encode(sha256(m.id::text::bytea), 'hex'), 'attachments/bench/receipt-' || m.id || '.pdf', '', false,
       m.created_at
FROM cases_message m WHERE m.source = 'email' AND m.id %% 100 = 0;
"""


def _message_kinds() -> list[tuple]:
    """Four variants of each kind of message, with bodies as the services store them: inbound HTML
    sanitised, the newest reply extracted once (apps.merchants.mail)."""
    from apps.merchants.mail import html_sanitize, reply_extract

    issues = ["arrived two hours late and the food was cold", "was missing two items (a drink and a side)",
              "was delivered to the wrong address", "arrived damaged: the bag was torn"]
    answers = ["Thanks for the quick answer. The customer is still waiting: is there any news?",
               "We sent the photos you asked for. Please confirm the refund.",
               "This is the second time this week for this address. Can you escalate?",
               "OK, understood. You can close the case."]
    agent = ["We have contacted the courier about order #ORDER# and will come back to you within 24 hours.",
             "The refund for order #ORDER# is approved; it shows on your next payout.",
             "Could you send us a photo of the receipt for order #ORDER#?",
             "The courier confirmed the delivery of order #ORDER#. We are checking the address with them."]
    notes = ["Courier confirmed late pickup for #ORDER#; refund approved up to 15 EUR.",
             "Third complaint from this merchant this month, flagging to the account manager.",
             "Waiting for the courier's GPS trace before answering.",
             "Merchant is a VIP: answer within the hour."]
    hub = ["Any update on order #ORDER#? The customer called again.",
           "Attached is the photo of the bag for #ORDER#.",
           "Thanks, that works for us.",
           "Can you tell us when the refund for #ORDER# will arrive?"]
    quote = ("Hello,\n\nWe have contacted the courier about order #ORDER# and will come back to you\n"
             "within 24 hours.\n\nKind regards,\nSupport team")
    rows = []
    for variant in range(1, 5):
        issue = issues[variant - 1]
        text = (f"Hello,\n\nOrder #ORDER# {issue}. The customer asked us for a refund and we would like to "
                f"know how to proceed with the courier.\n\nCould you check what happened and tell us who "
                f"covers the cost?\n\nThanks,\nStore manager")
        html = (f'<div dir="ltr"><p>Hello,</p><p>Order <b>#ORDER#</b> {issue}. The customer asked us for a '
                f"refund and we would like to know how to proceed with the courier.</p><p>Could you check "
                f"what happened and tell us who covers the cost?</p><p>Thanks,<br>Store manager</p>"
                f'<table style="border-top:1px solid #ddd"><tr><td style="color:#888;font-size:12px">'
                f"Sent from our store back office</td></tr></table></div>")
        rows.append(("first", variant, "inbound", "email", text, html))
        answer = answers[variant - 1]
        quoted = "\n".join(f"> {line}" for line in quote.split("\n"))
        text = (f"{answer}\n\nBest regards,\nStore manager\n\nOn Mon, 3 Nov 2026 at 10:12, Support team "
                f"<support@casehub.localhost> wrote:\n{quoted}")
        html = (f'<div dir="ltr"><div>{answer}</div><div><br></div><div>Best regards,<br>Store manager</div>'
                f'</div><br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, 3 Nov 2026 at '
                f"10:12, Support team &lt;support@casehub.localhost&gt; wrote:<br></div>"
                f'<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
                f'rgb(204,204,204);padding-left:1ex"><div>{quote.replace(chr(10), "<br>")}</div>'
                f"</blockquote></div>")
        rows.append(("reply", variant, "inbound", "email", text, html))
        rows.append(("agent", variant, "outbound", "agent",
                     f"Hello,\n\n{agent[variant - 1]}\n\nKind regards,\nSupport team", ""))
        rows.append(("note", variant, "outbound", "agent", notes[variant - 1], ""))
        rows.append(("hub", variant, "inbound", "hub", hub[variant - 1], ""))
    kinds = []
    for kind, variant, direction, source, text, html in rows:
        reply = reply_extract(text, html)
        kinds.append((kind, variant, direction, source, text, html_sanitize(html) if html else "", reply.text,
                      reply.html, reply.has_quoted_history, kind != "note"))
    return kinds


@dataclass
class Plan:
    merchant_of: list[int]  # per case k
    msgs: list[int]  # per case k
    sizes: Counter  # cases per merchant


def plan(shape: Shape, rng: random.Random) -> Plan:
    """Zipf-like merchants (exponent 0.7) and messages per case averaging messages/cases (1 to 60,
    a long tail), the total exact."""
    weights = list(itertools.accumulate(1 / (m + 1) ** 0.7 for m in range(shape.merchants)))
    merchant_of = rng.choices(range(shape.merchants), cum_weights=weights, k=shape.cases)
    mean = shape.messages / shape.cases
    msgs = [min(60, 1 + int(rng.expovariate(1 / (mean - 0.5)))) for _ in range(shape.cases)]
    missing = shape.messages - sum(msgs)
    while missing:
        k = rng.randrange(shape.cases)
        if missing > 0 and msgs[k] < 60:
            msgs[k] += 1
            missing -= 1
        elif missing < 0 and msgs[k] > 1:
            msgs[k] -= 1
            missing += 1
    return Plan(merchant_of=merchant_of, msgs=msgs, sizes=Counter(merchant_of))


def load(shape: Shape, data: Plan, now) -> None:
    """The hub queue, agents, then merchants, their users, cases, messages and read state by SQL."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.assignment.models import Agent
    from apps.cases import services

    queue = services.queue_create(slug="general", name="General", fields_schema={},
                                  transitions={"new": ["in_progress", "resolved"],
                                               "in_progress": ["pending_customer", "resolved"],
                                               "pending_customer": ["in_progress", "resolved"],
                                               "resolved": ["closed"], "closed": []})
    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"bench-agent-{n}", first_name="Agent", last_name=str(n))
                                      for n in range(shape.agents)])
    agents = Agent.objects.bulk_create([Agent(user=user, display_name=f"Agent {n}", skills=["english"],
                                              capacity=10) for n, user in enumerate(users)])
    span_s = 365 * 86400
    params = {"now": now, "n": shape.merchants, "queue": queue.pk, "subjects": SUBJECTS,
              "agents": shape.agents, "from_email": settings.DEFAULT_FROM_EMAIL,
              "support": settings.DEFAULT_FROM_EMAIL, "domain": settings.CASEHUB_EMAIL_DOMAIN}
    with connection.cursor() as cursor:
        cursor.execute(PLAN_SQL)
        with cursor.copy("COPY bench_plan (k, merchant, msgs, age_s, step_s) FROM STDIN") as copy:
            for k, (merchant, msgs) in enumerate(zip(data.merchant_of, data.msgs, strict=True)):
                age = max(60, (shape.cases - k) * span_s // shape.cases)
                copy.write_row((k, merchant, msgs, age, min(3 * 3600, age // (msgs + 1))))
        cursor.execute("ANALYZE bench_plan")
        cursor.execute("CREATE TEMP TABLE bench_agent (a int PRIMARY KEY, user_id int, name text)")
        with cursor.copy("COPY bench_agent (a, user_id, name) FROM STDIN") as copy:
            for n, agent in enumerate(agents, start=1):
                copy.write_row((n, agent.user_id, agent.display_name))
        cursor.execute("CREATE TEMP TABLE bench_kind (kind text, variant int, direction text, source text,"
                       " text_body text, html_body text, latest_reply_text text, latest_reply_html text,"
                       " has_quoted_history bool, merchant_visible bool, PRIMARY KEY (kind, variant))")
        with cursor.copy("COPY bench_kind FROM STDIN") as copy:
            for row in _message_kinds():
                copy.write_row(row)
        cursor.execute(MERCHANTS_SQL, params)
        # Batches keep each statement's sort and transition table small.
        batch = 100_000
        for lo in range(0, shape.cases, batch):
            cursor.execute(CASES_SQL, params | {"lo": lo, "hi": lo + batch})
        batch = 50_000
        for lo in range(0, shape.cases, batch):
            cursor.execute(MESSAGES_SQL, params | {"lo": lo, "hi": lo + batch})
        cursor.execute(READ_SQL, params)
        cursor.execute("VACUUM ANALYZE")


def expected_visible(k: int, msgs: int) -> int:
    """Merchant-visible messages of case k (MESSAGES_SQL: even s with (k + s) % 10 == 0 is a note)."""
    return sum(1 for s in range(1, msgs + 1) if not (s % 2 == 0 and (k + s) % 10 == 0))


# Clients --------------------------------------------------------------------------------------

@dataclass
class HubUser:
    merchant: int
    user_id: int
    token: str
    cases: list[str]  # its merchant's case ids, newest first
    numbers: dict[str, int]  # case id -> its k in the plan

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def pick_case(self, rng: random.Random) -> str:
        # Mostly recent cases, now and then an old one: what a merchant opens.
        return self.cases[int(rng.random() ** 3 * len(self.cases))]


def hub_users(shape: Shape, data: Plan) -> list[HubUser]:
    """The pool of client users: merchants from the largest down, denser among the large ones
    (rank ~ (i/pool)^2), each with a fresh knox token."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from knox.models import AuthToken

    by_size = [m for m, _ in data.sizes.most_common()]
    wanted = min(shape.pool, len(by_size))
    ranks = {int((i / wanted) ** 2 * len(by_size)) for i in range(wanted)}
    ranks |= set(itertools.islice((r for r in range(len(by_size)) if r not in ranks), wanted - len(ranks)))
    picked = [by_size[rank] for rank in sorted(ranks)]
    with connection.cursor() as cursor:
        cursor.execute("SELECT merchant, id::text, k FROM bench_plan WHERE merchant = ANY(%s)"
                       " ORDER BY merchant, k DESC", [picked])
        cases = defaultdict(dict)
        for merchant, case_id, k in cursor.fetchall():
            cases[merchant][case_id] = k
        cursor.execute("SELECT m, user_id FROM bench_merchant WHERE m = ANY(%s)", [picked])
        user_ids = dict(cursor.fetchall())
    users = get_user_model().objects.in_bulk([user_ids[m] for m in picked])
    return [HubUser(merchant=m, user_id=user_ids[m], token=AuthToken.objects.create(users[user_ids[m]])[1],
                    cases=list(cases[m]), numbers=cases[m]) for m in picked]


def throttle_reset(users: list[HubUser]) -> None:
    """Forget the users' request history in the throttle cache: phases start on equal terms."""
    from django.core.cache import cache

    cache.delete_many([f"throttle_{scope}_{u.user_id}" for u in users for scope in ("hub", "hub_write")])


class Samples:
    def __init__(self) -> None:
        self.ms: dict[str, list[float]] = {"list": [], "thread": []}
        self.statuses: Counter = Counter()
        self.lag_ms: list[float] = []
        self.started = self.ended = 0.0
        self.cpu: dict = {}

    def add(self, kind: str, ms: float, status: int) -> None:
        self.ms[kind].append(ms)
        self.statuses[status] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def error_statuses(self) -> dict[str, int]:
        return {str(status): n for status, n in self.statuses.items() if not 200 <= status < 300}

    @property
    def rps(self) -> float:
        return self.requests / (self.ended - self.started)

    def p(self, kind: str, pct: float) -> float:
        return round(percentile(self.ms[kind], pct), 2)

    def latencies(self) -> dict[str, float]:
        return {f"{name}_p{pct}_ms": self.p(kind, pct)
                for kind, name in (("list", "case_list"), ("thread", "thread")) for pct in (50, 99)}

    def meets_goals(self) -> bool:
        return not self.errors and all(self.p(kind, 99) < goal for kind, goal in GOALS_MS.items())


async def _request(http, user: HubUser, kind: str, rng: random.Random) -> tuple[str, float, int]:
    import httpx

    url = LIST_URL if kind == "list" else f"/api/v1/hub/cases/{user.pick_case(rng)}/messages/"
    started = time.perf_counter()
    try:
        response = await http.get(url, headers=user.headers)
        status = response.status_code
    except httpx.HTTPError:
        status = 0  # a refused or dropped connection counts as a failed request
    return kind, (time.perf_counter() - started) * 1000, status


class Server:
    """uvicorn on config.asgi:application as `make run` starts it, on a free loopback port, against
    the benchmark database; its log goes to a file under the var directory."""

    def __init__(self, db_name: str, workers: int) -> None:
        from config import embedded

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workers = workers
        self.url = f"http://127.0.0.1:{self.port}"
        # The web command of `make run` (apps/core/management/commands/runstack.py), plus --workers.
        argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port), "--lifespan", "on", "--no-access-log", "--workers", str(workers)]
        env = os.environ | {"CASEHUB_DB_NAME": db_name, "CASEHUB_EMBEDDED_QUIET": "1"}
        self.log_path = embedded.var_dir() / "bench-support_hub-server.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the web server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the web server did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def pids(self) -> list[int]:
        """The processes that serve requests: the workers, or uvicorn itself when it runs one."""
        import psutil

        if self.workers == 1:
            return [self.proc.pid]
        # Not multiprocessing's resource tracker: only the workers hold the listening socket.
        return [child.pid for child in psutil.Process(self.proc.pid).children()
                if any(conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.port
                       for conn in _connections(child.pid))]

    def owner(self, client_ports: set[int]) -> dict[int, int]:
        """Which worker holds the server side of each client port."""
        found = {}
        for pid in self.pids():
            for conn in _connections(pid):
                if conn.raddr and conn.raddr.port in client_ports:
                    found[conn.raddr.port] = pid
        return found

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started
                self.proc.wait()
        self.log.close()


def _connections(pid: int):
    import psutil

    try:
        return psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return []


async def pinned_clients(server: Server, n: int, timeout: float = 60.0):
    """n httpx clients of one keep-alive connection each, spread evenly over the worker processes
    (which also waits for every worker to serve)."""
    import httpx

    pids = server.pids()
    cap = math.ceil(n / len(pids))
    tls = ssl.create_default_context()  # unused on http://, but httpx builds one per client unless given
    load = Counter()
    kept: list = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = [httpx.AsyncClient(base_url=server.url, timeout=30, verify=tls,
                                   limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
                 for _ in range(n - len(kept))]
        responses = await asyncio.gather(*(http.get("/healthz") for http in fresh))
        ports = [r.extensions["network_stream"].get_extra_info("client_addr")[1] for r in responses]
        owners = server.owner(set(ports))
        for http, port in zip(fresh, ports, strict=True):
            pid = owners.get(port)
            if pid is not None and load[pid] < cap and len(kept) < n:
                load[pid] += 1
                kept.append(http)
            else:
                await http.aclose()
        if len(kept) == n:
            return kept
        await asyncio.sleep(0.05)  # a worker still starting accepts nothing yet
    raise RuntimeError(f"could not spread {n} connections over workers {pids}: {dict(load)}")


class CpuMeter:
    """CPU seconds of this process (the client), the web workers and PostgreSQL, and the whole
    machine's busy share, between start() and stop()."""

    def __init__(self, server: Server) -> None:
        from config import embedded

        self.server = server
        self.postmaster = embedded.service_pid("postgres")

    def _sample(self) -> dict:
        import psutil

        cpu, db = cpu_seconds, postgres_pids(self.postmaster)
        machine = psutil.cpu_times()
        return {"client": {0: time.process_time()}, "server": cpu(self.server.pids()), "db": cpu(db),
                "busy": {0: machine.user + machine.system + machine.nice + machine.irq + machine.softirq},
                "wall": time.perf_counter()}

    def start(self) -> None:
        self.first = self._sample()

    def stop(self, requests: int) -> dict:
        last = self._sample()
        wall = last["wall"] - self.first["wall"]
        # Per process: a backend that started meanwhile counts from zero, one that ended is lost.
        used = {name: sum(t - self.first[name].get(pid, 0.0) for pid, t in last[name].items())
                for name in ("client", "server", "db", "busy")}
        pct = {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}
        return {**{f"{name}_cpu_pct": pct[name] for name in ("client", "server", "db")},
                "machine_busy_pct": pct["busy"],
                **{f"{name}_cpu_ms_per_request": round(1000 * used[name] / max(1, requests), 3)
                   for name in ("client", "server", "db")}}


async def paced(server: Server, users: list[HubUser], seconds: float, meter: CpuMeter) -> Samples:
    """Each user one request per second (list and thread alternately), starts spread over the second."""
    clients = await pinned_clients(server, len(users))
    meter.start()
    loop = asyncio.get_running_loop()
    samples = Samples()
    start = loop.time() + 0.1
    end = start + seconds

    async def client(i: int, user: HubUser, http) -> None:
        rng = random.Random(i)
        n = 0
        while (due := start + i / len(users) + n) < end:
            await asyncio.sleep(due - loop.time())
            samples.lag_ms.append((loop.time() - due) * 1000)
            samples.add(*await _request(http, user, "list" if (n + i) % 2 == 0 else "thread", rng))
            n += 1

    samples.started = time.perf_counter()
    await asyncio.gather(*(client(i, user, http)
                           for i, (user, http) in enumerate(zip(users, clients, strict=True))))
    samples.ended = time.perf_counter()
    samples.cpu = meter.stop(samples.requests)
    await asyncio.gather(*(http.aclose() for http in clients))
    return samples


async def closed_loop(server: Server, users: list[HubUser], concurrency: int, seconds: float,
                      meter: CpuMeter) -> Samples:
    """`concurrency` clients each sending its next request as soon as the last one answered, the
    user rotating over the pool so that no user passes its throttle."""
    clients = await pinned_clients(server, concurrency)
    meter.start()
    loop = asyncio.get_running_loop()
    samples = Samples()
    counter = itertools.count()
    end = loop.time() + seconds

    async def client(i: int, http) -> None:
        rng = random.Random(1000 + i)
        while loop.time() < end:
            n = next(counter)
            user = users[n % len(users)]
            kind = "list" if (n + n // len(users)) % 2 == 0 else "thread"
            samples.add(*await _request(http, user, kind, rng))

    samples.started = time.perf_counter()
    await asyncio.gather(*(client(i, http) for i, http in enumerate(clients)))
    samples.ended = time.perf_counter()
    samples.cpu = meter.stop(samples.requests)
    await asyncio.gather(*(http.aclose() for http in clients))
    return samples


def _run_async(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    # The client's own overhead per request is smaller on uvloop: more of the two cores for the server.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# Query plans ----------------------------------------------------------------------------------

def endpoint_queries(users: list[HubUser], data: Plan, explain: bool) -> dict:
    """Requests both endpoints in-process as the largest merchant and the pool's middle one (the
    longest of their recent threads): checks the counts against the plan, counts the statements and,
    with `explain`, prints each statement's EXPLAIN (ANALYZE, BUFFERS) to stderr."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for user in (users[0], users[len(users) // 2]):
        biggest = max(user.cases[:200], key=lambda case_id: data.msgs[user.numbers[case_id]])
        k = user.numbers[biggest]
        for kind, url in (("list", LIST_URL), ("thread", f"/api/v1/hub/cases/{biggest}/messages/")):
            client = Client(HTTP_AUTHORIZATION=f"Token {user.token}")
            client.get(url)  # permissions and caches warm, as on the server
            with CaptureQueriesContext(connection) as captured:
                response = client.get(url)
            assert response.status_code == 200, (url, response.status_code, response.content[:500])
            body = response.json()
            want = data.sizes[user.merchant] if kind == "list" else expected_visible(k, data.msgs[k])
            assert body["count"] == want, (kind, url, body["count"], want)
            counts[kind] = len(captured.captured_queries)
            if explain:
                _print_plans(f"{kind} {url} ({body['count']} rows, merchant with "
                             f"{data.sizes[user.merchant]} cases)", captured.captured_queries)
    return {"case_list_queries": counts["list"], "thread_queries": counts["thread"]}


def _print_plans(title: str, queries: list[dict]) -> None:
    from django.db import connection

    print(f"\n=== {title}", file=sys.stderr)
    with connection.cursor() as cursor:
        for query in queries:
            sql = query["sql"]
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            print(f"--- {query['time']} s: {sql[:3000]}", file=sys.stderr)
            print("\n".join(row[0] for row in cursor.fetchall()), file=sys.stderr)


# Run ------------------------------------------------------------------------------------------

def run(shape: Shape, db_name: str, *, workers: int, explain: bool) -> dict:
    import logging

    from django.utils import timezone

    # httpx logs every request at INFO: formatting those lines would be the client's main cost.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loadavg = os.getloadavg()[0]
    rng = random.Random(11)
    started = time.perf_counter()
    data = plan(shape, rng)
    load(shape, data, timezone.now())
    users = hub_users(shape, data)
    load_s = time.perf_counter() - started
    queries = endpoint_queries(users, data, explain=False)
    step = max(1, len(users) // shape.clients)
    clients = users[::step][:shape.clients]
    settle_client_heap()

    server = Server(db_name, workers)
    try:
        server.wait_ready()
        meter = CpuMeter(server)
        throttle_reset(users)
        # Imports, database connections and caches of every worker, before anything is timed.
        _run_async(paced(server, clients, shape.warmup_s, meter))
        throttle_reset(users)
        phase1 = _run_async(paced(server, clients, shape.phase1_s, meter))
        failures = server.log_tail() if phase1.errors else ""
        steps = []
        for concurrency in shape.steps:
            throttle_reset(users)
            samples = _run_async(closed_loop(server, users, concurrency, shape.step_s, meter))
            steps.append({"concurrency": concurrency, "rps": round(samples.rps, 1), **samples.latencies(),
                          "errors": samples.errors, "goals_met": samples.meets_goals(), **samples.cpu})
            if not samples.meets_goals():
                break
    finally:
        server.stop()
        throttle_reset(users)
    met = [s for s in steps if s["goals_met"]]
    best = max(met, key=lambda s: s["rps"]) if met else None
    goals_met = phase1.meets_goals()
    if explain or not goals_met:
        endpoint_queries(users, data, explain=True)
    if failures:  # last on stderr, where a failing run's tail is read
        print(f"phase 1 statuses: {dict(phase1.statuses)}; the server's log ends with:\n{failures}",
              file=sys.stderr)
    return {
        "merchants": shape.merchants, "cases": shape.cases, "messages": shape.messages,
        "clients": len(clients), "requests": phase1.requests, "errors": phase1.errors,
        "error_statuses": phase1.error_statuses(),
        **phase1.latencies(),
        "max_rps": best["rps"] if best else 0.0,
        "max_rps_concurrency": best["concurrency"] if best else 0,
        "peak_rps": max((s["rps"] for s in steps if not s["errors"]), default=0.0),
        "goals_met": goals_met,
        "phase1_rps": round(phase1.rps, 1),
        "client_lag_p99_ms": round(percentile(phase1.lag_ms, 99), 2),
        **{f"phase1_{name}": value for name, value in phase1.cpu.items()},
        **queries,
        "server": f"uvicorn config.asgi:application --workers {workers}",
        "pool_users": len(users), "largest_merchant_cases": data.sizes.most_common(1)[0][1],
        "load_s": round(load_s, 1), "loadavg_1m_before": round(loadavg, 2),
        "steps": steps,
    }


if __name__ == "__main__":
    main()
