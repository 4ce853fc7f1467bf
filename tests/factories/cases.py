"""Factories of the cases app: queues with an active config, cases through the services, message
rows for read tests, and raw mail as a client sends it."""

from __future__ import annotations

import email.message
import email.policy
import email.utils
import hashlib
import uuid

import factory
from django.utils import timezone

from apps.cases import services
from apps.cases.models import Attachment, Case, Message, MessageDirection, MessageSource, Queue, QueueConfig

STANDARD_TRANSITIONS = {
    "new": ["assigned", "in_progress", "resolved", "closed"],
    "assigned": ["in_progress", "pending_customer", "resolved", "new"],
    "in_progress": ["pending_customer", "resolved"],
    "pending_customer": ["in_progress", "resolved"],
    "resolved": ["closed", "reopened"],
    "reopened": ["assigned", "in_progress", "resolved"],
    "closed": [],
}

REFUND_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "minLength": 3},
        "order_total": {"type": "number", "minimum": 0},
        "reason": {"type": "string", "enum": ["late", "missing_items", "damaged", "other"]},
        "items_missing": {"type": "integer", "minimum": 0},
        "vip": {"type": "boolean"},
        "delivered_on": {"type": "string", "format": "date"},
    },
    "required": ["order_id"],
    "additionalProperties": False,
}


class QueueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Queue
        django_get_or_create = ("slug",)
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"queue-{n}")
    name = factory.LazyAttribute(lambda q: q.slug.replace("-", " ").title())

    @factory.post_generation
    def config(self, create, extracted, **kwargs):
        """An active config: QueueFactory(config__fields_schema=..., config__targeting_rules=...)."""
        if not create or extracted is False:
            return
        if QueueConfig.objects.filter(queue=self, is_active=True).exists():
            return
        services.queue_config_publish(
            queue=self,
            fields_schema=kwargs.pop("fields_schema", {"type": "object"}),
            transitions=kwargs.pop("transitions", STANDARD_TRANSITIONS),
            sla=kwargs.pop("sla", {"first_response_minutes": 60}),
            **kwargs,
        )


def make_case(*, queue: Queue | None = None, fields: dict | None = None, **kwargs) -> Case:
    """A case created through `case_create` (so its `created` event exists)."""
    return services.case_create(queue=queue or QueueFactory(), fields=fields or {}, **kwargs)


# Messages and mail ------------------------------------------------------------------------------
# Tests of writes go through apps.cases.services; these build rows for tests that read threads.


class MessageFactory(factory.django.DjangoModelFactory):
    """A stored message row (no timeline event): for reads, e.g. thread query counts."""

    class Meta:
        model = Message

    case = factory.LazyFunction(make_case)
    direction = MessageDirection.INBOUND
    source = MessageSource.EMAIL
    sender_address = factory.Sequence(lambda n: f"customer{n}@example.org")
    sender_name = factory.Faker("name")
    subject = "Where is my order?"
    message_id = factory.Sequence(lambda n: f"factory-{n}@mail.example.org")
    text_body = "Hello, my order is late.\n\nOn Monday, support wrote:\n> We are on it."
    latest_reply_text = "Hello, my order is late."
    has_quoted_history = True
    sent_at = factory.LazyFunction(timezone.now)


class AttachmentFactory(factory.django.DjangoModelFactory):
    """A stored file of a message (a small plain-text file in Django storage)."""

    class Meta:
        model = Attachment

    message = factory.SubFactory(MessageFactory)
    case = factory.LazyAttribute(lambda a: a.message.case)
    filename = factory.Sequence(lambda n: f"note-{n}.txt")
    content_type = "text/plain"
    file = factory.django.FileField(data=b"order 42\n", filename="stored.txt")
    size = 9
    sha256 = hashlib.sha256(b"order 42\n").hexdigest()


def mail_bytes(*, subject: str = "Where is my order?", sender: str = "Ann Customer <ann@example.org>",
               to: str = "support@casehub.localhost", message_id: str | None = None,
               in_reply_to: str | None = None, references: list[str] | None = None, text: str = "Hello",
               html: str | None = None, headers: dict[str, str] | None = None,
               attachments: list[tuple[str, str, bytes]] = ()) -> bytes:
    """A raw RFC 822 mail as a mail client sends it (ids without <>; attachments: name, type, bytes)."""
    mail = email.message.EmailMessage(policy=email.policy.SMTP)
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Date"] = email.utils.format_datetime(timezone.now())
    mail["Message-ID"] = f"<{message_id or uuid.uuid4().hex + '@mail.example.org'}>"
    if in_reply_to:
        mail["In-Reply-To"] = f"<{in_reply_to}>"
    if references:
        mail["References"] = " ".join(f"<{ref}>" for ref in references)
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    for name, content_type, content in attachments:
        maintype, subtype = content_type.split("/", 1)
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=name)
    return mail.as_bytes()
