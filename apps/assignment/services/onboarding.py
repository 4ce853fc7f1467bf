"""Self-serve agent onboarding: ops add agents one by one or from a CSV file, validated row by row;
each new agent gets a user in the agent role and an emailed invitation link to set a password."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.assignment.models import Agent, AgentQueue
from apps.cases.models import Channel, Queue
from apps.core.errors import ApplicationError
from apps.core.input import shown, storable_text_error
from apps.core.roles import AGENT
from apps.core.uploads import UploadRefused, upload_check

logger = logging.getLogger(__name__)

COLUMNS = ("name", "email", "queues", "skills", "capacity", "channel_weights")
ALL_OR_NOTHING, EACH_ROW = "all_or_nothing", "each_row"
MODES = (ALL_OR_NOTHING, EACH_ROW)
# A whole team in one file, answered within one request (each new agent is also one email).
MAX_ROWS = 1000
MAX_BYTES = 512 * 1024
MAX_CELL_CHARS = 1000
CAPACITY_MIN, CAPACITY_MAX = 1, 100  # agent_capacity_sane holds the upper bound in the database too
PRIORITY_MIN, PRIORITY_MAX = 1, 9  # agentqueue_priority_range
WEIGHT_MIN, WEIGHT_MAX = 1, 100
DEFAULT_CAPACITY = Agent._meta.get_field("capacity").default
NAME_MAX = Agent._meta.get_field("display_name").max_length
SKILL_MAX = Agent._meta.get_field("skills").base_field.max_length
# The user's username is their email address, so it cannot be longer than a username.
EMAIL_MAX = get_user_model()._meta.get_field("username").max_length
CREATED, UPDATED, UNCHANGED = "created", "updated", "unchanged"
INVALID, NOT_WRITTEN = "invalid", "not written"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class AgentRow:
    """One row of the file (or one single add): its outcome, and its errors by column."""

    line: int
    name: str = ""
    email: str = ""
    outcome: str = INVALID
    errors: dict[str, list[str]] = field(default_factory=dict)
    # Parsed values, set once the row is valid.
    queues: dict[str, int] = field(default_factory=dict, repr=False)
    skills: list[str] = field(default_factory=list, repr=False)
    capacity: int = DEFAULT_CAPACITY
    channel_weights: dict[str, int] = field(default_factory=dict, repr=False)
    invited: bool = False

    def error(self, column: str, message: str) -> None:
        self.errors.setdefault(column, []).append(message)


@dataclass
class ImportReport:
    mode: str
    rows: list[AgentRow] = field(default_factory=list)
    # Errors of the file as a whole (size, encoding, header): no row was read.
    file_errors: list[str] = field(default_factory=list)
    written: bool = False

    @property
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys((CREATED, UPDATED, UNCHANGED, INVALID, NOT_WRITTEN), 0)
        for row in self.rows:
            counts[row.outcome] += 1
        return counts

    @property
    def ok(self) -> bool:
        return not self.file_errors and not any(row.outcome == INVALID for row in self.rows)


def agents_import_csv(*, file: bytes | BinaryIO, mode: str = ALL_OR_NOTHING, invited_by,
                      name: str = "agents.csv", base_url: str = "") -> ImportReport:
    """Add or update the agents a CSV file lists (upsert by email), in one transaction.

    `all_or_nothing` writes nothing unless every row is valid; `each_row` writes the valid rows
    and reports the others. Importing the same file again changes nothing. New agents are
    emailed an invitation link once the import commits.
    """
    if mode not in MODES:
        raise ApplicationError("Unknown import mode.", errors={"mode": [f"One of {', '.join(MODES)}."]})
    report = ImportReport(mode=mode)
    text = _file_text(file, name=name, report=report)
    if text is None:
        return report
    report.rows = _rows_parse(text, report=report)
    if not report.rows and not report.file_errors:
        report.file_errors.append("The file has a header but no agents.")
    if report.file_errors:
        report.rows = []
        return report
    plan = _plan(report.rows)
    if mode == ALL_OR_NOTHING and not report.ok:
        for row in report.rows:
            if row.outcome != INVALID:
                row.outcome = NOT_WRITTEN
        return report
    _write(plan, invited_by=invited_by, base_url=base_url)
    report.written = True
    return report


def agent_invite(*, name: str, email: str, queues: Mapping[str, int] | str = "",
                 skills: Iterable[str] | str = "", capacity: int | str | None = None,
                 channel_weights: Mapping[str, int] | str = "", invited_by, base_url: str = "") -> AgentRow:
    """Add one agent (or update the agent with that email), by the same rules as a file row.

    An agent who has not set a password yet is sent the invitation again. Raises
    ApplicationError with errors by field when the input is invalid.
    """
    cells = {
        "name": name, "email": email,
        "queues": queues if isinstance(queues, str) else ";".join(f"{q}:{p}" for q, p in queues.items()),
        "skills": skills if isinstance(skills, str) else ";".join(skills),
        "capacity": "" if capacity is None else str(capacity),
        "channel_weights": (channel_weights if isinstance(channel_weights, str)
                            else channel_weights_text(channel_weights)),
    }
    row = _row_parse(1, cells)
    plan = _plan([row])
    if row.outcome == INVALID:
        raise ApplicationError("The agent cannot be added.", errors=row.errors)
    _write(plan, invited_by=invited_by, base_url=base_url, reinvite=True)
    return row


def invitation_link(user, *, base_url: str = "") -> str:
    """The one-time link that lets `user` set a password; it lapses after PASSWORD_RESET_TIMEOUT
    and once a password is set (the token covers the password hash)."""
    path = reverse("agent_invitation", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                                               "token": default_token_generator.make_token(user)})
    # The configured address first: a Host header is the sender's to choose.
    base = (settings.CASEHUB_BASE_URL or base_url).rstrip("/")
    return f"{base}{path}"


# File and rows ---------------------------------------------------------------------------------

def _file_text(file: bytes | BinaryIO, *, name: str, report: ImportReport) -> str | None:
    try:
        checked = upload_check(name, file, max_bytes=MAX_BYTES)
        content = checked.content
    except UploadRefused as exc:
        if exc.code != "type_not_allowed":
            report.file_errors.append(str(exc))
            return None
        # Control characters make the sniffer call it binary; as text, they are reported by row
        # (the size was checked before the type).
        if not isinstance(file, bytes):
            file.seek(0)
        content = file if isinstance(file, bytes) else file.read()
    else:
        if checked.content_type not in ("text/csv", "text/plain"):
            report.file_errors.append(f"This is a {checked.content_type} file, not a CSV file.")
            return None
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        report.file_errors.append(f"The file is not UTF-8 text (line {line}, byte {exc.start}): "
                                  "save it as \"CSV UTF-8\".")
        return None


def _rows_parse(text: str, *, report: ImportReport) -> list[AgentRow]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[AgentRow] = []
    try:
        header = next(reader, None)
        columns = [shown(c.strip().lower()) for c in header or ()]
        missing = [c for c in COLUMNS if c not in columns]
        unknown = [c for c in columns if c not in COLUMNS]
        doubled = sorted({c for c in columns if columns.count(c) > 1})
        if missing or unknown or doubled:
            report.file_errors.append(
                f"The first line must name the columns {', '.join(COLUMNS)}."
                + (f" Missing: {', '.join(missing)}." if missing else "")
                + (f" Unknown: {', '.join(unknown)}." if unknown else "")
                + (f" Twice: {', '.join(doubled)}." if doubled else ""))
            return []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(rows) == MAX_ROWS:
                report.file_errors.append(f"The file has more than {MAX_ROWS} agents: split it.")
                return []
            line = reader.line_num
            if len(cells) != len(columns):
                row = AgentRow(line=line)
                row.error("row", f"{len(cells)} values for {len(columns)} columns.")
                rows.append(row)
                continue
            rows.append(_row_parse(line, dict(zip(columns, cells, strict=True))))
    except csv.Error as exc:
        report.file_errors.append(f"Line {reader.line_num} is not valid CSV: {exc}.")
        return []
    return rows


def _row_parse(line: int, cells: dict[str, str]) -> AgentRow:
    row = AgentRow(line=line)
    clean: dict[str, str] = {}
    for column in COLUMNS:
        value = cells.get(column, "")
        problem = storable_text_error(value) or ("Control characters are not allowed."
                                                 if _CONTROL.search(value) else None)
        if problem:
            row.error(column, problem)
        elif len(value) > MAX_CELL_CHARS:
            row.error(column, f"Text of at most {MAX_CELL_CHARS} characters.")
        else:
            clean[column] = value.strip()
    row.name = shown(cells.get("name", "").strip())[:NAME_MAX]
    row.email = shown(cells.get("email", "").strip().lower())[:MAX_CELL_CHARS]

    if "name" in clean:
        if not clean["name"]:
            row.error("name", "This field is required.")
        elif len(clean["name"]) > NAME_MAX:
            row.error("name", f"Text of at most {NAME_MAX} characters.")
    if "email" in clean:
        email = clean["email"].lower()
        if not email:
            row.error("email", "This field is required.")
        elif len(email) > EMAIL_MAX:
            row.error("email", f"An address of at most {EMAIL_MAX} characters.")
        else:
            try:
                validate_email(email)
            except ValidationError:
                row.error("email", "Not a valid email address.")
    if "queues" in clean:
        row.queues = _pairs(row, "queues", clean["queues"], default=1, low=PRIORITY_MIN, high=PRIORITY_MAX,
                            what="priority")
        if not clean["queues"]:
            row.error("queues", "At least one queue: the engine offers an agent only their queues' cases.")
    if "skills" in clean:
        skills = [s.strip() for s in clean["skills"].split(";") if s.strip()]
        for skill in skills:
            if len(skill) > SKILL_MAX:
                row.error("skills", f"'{skill[:20]}…' is longer than {SKILL_MAX} characters.")
        row.skills = sorted(set(skills))
    if clean.get("capacity"):
        try:
            row.capacity = int(clean["capacity"])
        except ValueError:
            row.error("capacity", "A whole number.")
        if "capacity" not in row.errors and not CAPACITY_MIN <= row.capacity <= CAPACITY_MAX:
            row.error("capacity", f"Between {CAPACITY_MIN} and {CAPACITY_MAX}.")
    if "channel_weights" in clean:
        row.channel_weights, errors = channel_weights_parse(clean["channel_weights"])
        for error in errors:
            row.error("channel_weights", error)
    row.outcome = INVALID if row.errors else UNCHANGED
    return row


def channel_weights_parse(text: str) -> tuple[dict[str, int], list[str]]:
    """An agent's own channel weights written as `chat:3;email:1` (the CSV column, the invite and
    agent forms), and what is wrong with them; empty text is no weights of their own."""
    row = AgentRow(line=0)
    weights = _pairs(row, "channel_weights", text, default=None, low=WEIGHT_MIN, high=WEIGHT_MAX,
                     what="weight")
    unknown = sorted(set(weights) - set(Channel.values))
    if unknown:
        row.error("channel_weights", f"Unknown channel {', '.join(map(repr, unknown))}; "
                                     f"channels: {', '.join(Channel.values)}.")
    return weights, row.errors.get("channel_weights", [])


def channel_weights_text(weights: Mapping[str, int]) -> str:
    return ";".join(f"{channel}:{units}" for channel, units in sorted(weights.items()))


def _pairs(row: AgentRow, column: str, text: str, *, default: int | None, low: int, high: int,
           what: str) -> dict[str, int]:
    """`a:2;b:1` as {"a": 2, "b": 1}; a key without a number takes `default` (None: required)."""
    pairs: dict[str, int] = {}
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        key, colon, number = (s.strip() for s in part.partition(":"))
        if not key:
            row.error(column, f"'{part}' has no name before the colon.")
            continue
        if key in pairs:
            row.error(column, f"'{key}' is listed twice.")
            continue
        if not colon and default is not None:
            pairs[key] = default
            continue
        try:
            value = int(number)
        except ValueError:
            row.error(column, f"'{part}': the {what} must be a whole number (e.g. {key}:{low}).")
            continue
        if not low <= value <= high:
            row.error(column, f"'{part}': the {what} must be between {low} and {high}.")
            continue
        pairs[key] = value
    return pairs


# Plan and write --------------------------------------------------------------------------------

@dataclass
class _Plan:
    rows: list[AgentRow]
    users: dict[str, Any]  # email -> existing user
    agents: dict[int, Agent]  # user id -> existing agent
    links: dict[int, dict[int, int]]  # agent id -> {queue id: priority}
    queues: dict[str, int]  # slug -> queue id
    agent_group: Group | None
    grouped: set[int]  # user ids already in the agent role


def _plan(rows: list[AgentRow]) -> _Plan:
    """Cross-row and database checks in a few queries; decides each valid row's outcome."""
    seen: dict[str, int] = {}
    for row in rows:
        if row.email and "email" not in row.errors:
            if row.email in seen:
                row.error("email", f"Also on line {seen[row.email]}: one row per agent.")
            else:
                seen[row.email] = row.line
    slugs = {slug for row in rows for slug in row.queues}
    queues = dict(Queue.objects.filter(slug__in=slugs, is_active=True).values_list("slug", "id"))
    User = get_user_model()
    emails = {row.email for row in rows if row.email and "email" not in row.errors}
    users: dict[str, list] = {}
    for user in (User.objects.annotate(email_lower=Lower("email"))
                 .filter(Q(email_lower__in=emails) | Q(username__in=emails))
                 .select_related("merchant_membership")):
        for key in {user.email_lower, user.username}:
            if key in emails and user not in users.setdefault(key, []):
                users[key].append(user)
    found = [u for us in users.values() for u in us]
    agents = {a.user_id: a for a in Agent.objects.filter(user__in=found)}
    links: dict[int, dict[int, int]] = {}
    for agent_id, queue_id, priority in AgentQueue.objects.filter(agent__in=agents.values()).values_list(
            "agent_id", "queue_id", "priority"):
        links.setdefault(agent_id, {})[queue_id] = priority
    group = Group.objects.filter(name=AGENT).first()
    grouped = set(User.groups.through.objects.filter(group=group, user__in=found)
                  .values_list("user_id", flat=True)) if group else set()
    plan = _Plan(rows=rows, users={}, agents=agents, links=links, queues=queues, agent_group=group,
                 grouped=grouped)
    for row in rows:
        for slug in row.queues:
            if slug not in queues:
                row.error("queues", f"Unknown or inactive queue '{slug}'.")
        matches = users.get(row.email, [])
        if len(matches) > 1 or (matches and matches[0].email.lower() != row.email):
            row.error("email", "Another user already has this address as their username or email.")
        elif matches:
            user = matches[0]
            if getattr(user, "merchant_membership", None) is not None:
                row.error("email", "This address belongs to a merchant user, who cannot be an agent.")
            elif user.is_superuser:
                row.error("email", "This address belongs to an administrator account.")
            else:
                plan.users[row.email] = user
        if group is None:
            row.error("row", "The agent role does not exist yet (run migrations).")
        if row.errors:
            row.outcome = INVALID
            continue
        user = plan.users.get(row.email)
        agent = agents.get(user.pk) if user else None
        if agent is None:
            row.outcome = CREATED
        elif (agent.display_name, sorted(agent.skills), agent.capacity, agent.channel_weights,
              links.get(agent.pk, {}), user.is_staff, user.pk in grouped) == (
                row.name, row.skills, row.capacity, row.channel_weights,
                {queues[s]: p for s, p in row.queues.items()}, True, True):
            row.outcome = UNCHANGED
        else:
            row.outcome = UPDATED
    return plan


def _write(plan: _Plan, *, invited_by, base_url: str, reinvite: bool = False) -> None:
    """Every valid row in one transaction, one statement per table."""
    User = get_user_model()
    rows = [row for row in plan.rows if row.outcome in (CREATED, UPDATED)]
    # Only people who cannot sign in yet: a link that sets a password is no way to greet an
    # existing colleague.
    invite = [row for row in plan.rows if (row.outcome == CREATED or (reinvite and row.outcome != INVALID))
              and ((user := plan.users.get(row.email)) is None
                   or (not user.has_usable_password() and user.last_login is None))]
    if not rows and not invite:
        return
    try:
        with transaction.atomic():
            new_users = []
            for row in rows:
                if row.email not in plan.users:
                    user = User(username=row.email, email=row.email, is_staff=True)
                    user.set_unusable_password()
                    new_users.append(user)
            existing = [plan.users[row.email].pk for row in rows if row.email in plan.users]
            for user in User.objects.bulk_create(new_users):
                plan.users[user.email] = user
            User.objects.filter(pk__in=existing, is_staff=False).update(is_staff=True)
            User.groups.through.objects.bulk_create(
                [User.groups.through(user_id=plan.users[row.email].pk, group_id=plan.agent_group.pk)
                 for row in rows if plan.users[row.email].pk not in plan.grouped],
                ignore_conflicts=True)

            created, changed = [], []
            for row in rows:
                user = plan.users[row.email]
                agent = plan.agents.get(user.pk)
                if agent is None:
                    agent = plan.agents[user.pk] = Agent(user=user)
                    created.append(agent)
                else:
                    changed.append(agent)
                agent.display_name, agent.skills, agent.capacity = row.name, row.skills, row.capacity
                agent.channel_weights = row.channel_weights
            Agent.objects.bulk_create(created)
            Agent.objects.bulk_update(changed, ["display_name", "skills", "capacity", "channel_weights"])

            wanted = {(plan.agents[plan.users[row.email].pk].pk, plan.queues[slug]): priority
                      for row in rows for slug, priority in row.queues.items()}
            stale = Q(pk__in=[])
            for row in rows:
                agent_id = plan.agents[plan.users[row.email].pk].pk
                keep = [plan.queues[slug] for slug in row.queues]
                stale |= Q(agent_id=agent_id) & ~Q(queue_id__in=keep)
            AgentQueue.objects.filter(stale).delete()
            AgentQueue.objects.bulk_create(
                [AgentQueue(agent_id=a, queue_id=q, priority=p) for (a, q), p in wanted.items()
                 if plan.links.get(a, {}).get(q) != p],
                update_conflicts=True, unique_fields=["agent", "queue"], update_fields=["priority"])

            users = [plan.users[row.email] for row in invite]
            for row in invite:
                row.invited = True
            transaction.on_commit(lambda: _invitations_send(users, invited_by=invited_by, base_url=base_url))
    except IntegrityError as exc:
        # Another import or add wrote the same people meanwhile: nothing here was written.
        logger.info("agent import conflicted: %s", exc)
        raise ApplicationError("These agents were changed by someone else at the same time; "
                               "nothing was written. Upload the file again.", code="conflict") from exc


def _invitations_send(users: list, *, invited_by, base_url: str) -> None:
    """After the commit, so an invitation never names a user a rolled-back import created. A
    failed send leaves the agent in place; adding them again by email sends a new invitation."""
    sender = getattr(invited_by, "email", "") or settings.DEFAULT_FROM_EMAIL
    hours = settings.PASSWORD_RESET_TIMEOUT // 3600
    messages = [mail.EmailMessage(
        subject="You are invited to Casehub",
        body=(f"{sender} added you to Casehub as an agent.\n\n"
              f"Set your password within {hours} hours: {invitation_link(user, base_url=base_url)}\n\n"
              "Your sign-in name is this email address. You stay offline (no cases are offered to "
              "you) until you sign in and set your presence to available.\n"),
        from_email=settings.DEFAULT_FROM_EMAIL, to=[user.email],
        headers={"Auto-Submitted": "auto-generated"},
    ) for user in users]
    try:
        mail.get_connection().send_messages(messages)
    except Exception:  # the import stands; the log says whom to invite again
        logger.exception("agent invitations not sent to %s", ", ".join(u.email for u in users))
