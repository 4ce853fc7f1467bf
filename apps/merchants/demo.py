"""Demo merchants, each with one hub user (`merchant1`..`merchant5`, password "merchant"), and for
the first merchant a few cases with threads, so /hub/ shows unread badges, a mail with quoted
history and attachments."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

from django.conf import settings

from apps.assignment.models import Agent
from apps.cases.models import Case, Queue
from apps.cases.services import (
    case_create,
    message_post_from_hub,
    message_receive_email,
    message_send_from_agent,
)
from apps.core.demo import demo_user
from apps.core.progress import Progress
from apps.merchants.models import Merchant, MerchantUser

DEMO_MERCHANTS = (
    ("m-1001", "Corner Mart"), ("m-1002", "Green Basket Grocery"), ("m-1003", "QuickStop Convenience"),
    ("m-1004", "Harbor Pharmacy"), ("m-1005", "Daily Fresh Market"),
)
HUB_NAMESPACE = uuid.UUID("5d0c7f1e-3b8a-4e62-9c55-7a1f0e2d9b41")
# A 1x1 PNG, so the demo thread has an attachment to download.
PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5d1b3f40000000049454e44ae426082")


def seed(*, progress: Progress) -> dict[str, int]:
    for n, (external_id, name) in enumerate(DEMO_MERCHANTS, start=1):
        merchant, _ = Merchant.objects.get_or_create(external_id=external_id, defaults={"name": name})
        user = demo_user(f"merchant{n}", "merchant", roles=("merchant",), staff=False)
        MerchantUser.objects.get_or_create(user=user, defaults={"merchant": merchant})
    return {"merchants": Merchant.objects.count(), "merchant_users": MerchantUser.objects.count()}


def _demo_mail(case: Case, sender: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Corner Mart <{sender}>"
    mail["To"] = settings.DEFAULT_FROM_EMAIL
    mail["Subject"] = f"Re: {case.subject} [case:{case.pk}]"
    mail["Message-ID"] = f"<demo-{case.pk}@demo.casehub.local>"
    text = ("Hi, two bottles arrived broken, photo attached. Please refund them.\n\n"
            "On Mon, Casehub Support wrote:\n> Could you send us a photo of the damage?\n")
    mail.set_content(text)
    mail.add_alternative(
        "<p>Hi, two bottles arrived <b>broken</b>, photo attached. Please refund them.</p>"
        '<div class="gmail_quote">On Mon, Casehub Support wrote:'
        "<blockquote>Could you send us a photo of the damage?</blockquote></div>", subtype="html")
    mail.add_attachment(PIXEL_PNG, maintype="image", subtype="png", filename="broken-bottles.png")
    return mail.as_bytes()


def seed_hub(*, progress: Progress) -> dict[str, int]:
    """Threads for merchant1 in the hub's queue: one answered by an agent over the hub, one by
    mail with quoted history and a photo, one still waiting for an answer."""
    members = MerchantUser.objects.select_related("user", "merchant")
    member = members.filter(user__username="merchant1").first()
    queue = Queue.objects.filter(slug=settings.CASEHUB_HUB_QUEUE).first()
    if member is None or queue is None:
        return {"hub_demo_cases": 0}
    agent = Agent.objects.select_related("user").filter(user__username="agent1").first()
    user, ref = member.user, member.merchant.external_id
    threads = (
        ("Two late deliveries this week", "hub"),
        ("Refund for broken bottles in order ORD-100245", "email"),
        ("Please update our opening hours", "waiting"),
    )
    for subject, kind in threads:
        case_id = uuid.uuid5(HUB_NAMESPACE, subject)
        if Case.objects.filter(pk=case_id).exists():
            continue
        case = case_create(queue=queue, case_id=case_id, subject=subject, merchant_ref=ref, actor=user)
        if kind == "email":
            message_receive_email(raw=_demo_mail(case, user.email or "merchant1@demo.casehub.local"))
        else:
            message_post_from_hub(case=case, user=user, files=[], text={
                "hub": "Orders 100231 and 100240 both arrived over an hour late. What happened?",
                "waiting": "From next Monday we open at 7:00 instead of 8:00.",
            }[kind])
        if agent is not None and kind != "waiting":
            message_send_from_agent(case=case, user=agent.user, text={
                "hub": "Sorry about that: the courier had a breakdown. We have credited both delivery fees.",
                "email": "Thanks for the photo. The refund for the two bottles is on its way.",
            }[kind])
    return {"hub_demo_cases": Case.objects.filter(merchant_ref=ref, pk__in=[
        uuid.uuid5(HUB_NAMESPACE, subject) for subject, _ in threads]).count()}
