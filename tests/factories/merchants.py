"""Factories of the Support Hub: merchants' cases and their threads, written through the services
(hub posts, agents' replies, inbound mail) like every real message, and API tokens."""

from __future__ import annotations

import uuid
from email.message import EmailMessage

from django.core.files.uploadedfile import SimpleUploadedFile

from apps.cases.models import Case, Message
from apps.cases.services import message_post_from_hub, message_receive_email, message_send_from_agent
from apps.merchants import services as hub_services
from apps.merchants.models import MerchantUser
from tests.factories.accounts import AgentFactory, MerchantUserFactory
from tests.factories.cases import QueueFactory, make_case

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32


def png(name: str = "photo.png", content: bytes = PNG) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="image/png")


def hub_case(member: MerchantUser, *, subject: str = "Late delivery", **kwargs) -> Case:
    """A case of the member's merchant, in the hub's queue ("general")."""
    queue = kwargs.pop("queue", None) or QueueFactory(slug="general")
    return make_case(queue=queue, subject=subject, merchant_ref=member.merchant.external_id, **kwargs)


def hub_post(case: Case, member: MerchantUser, text: str = "Any news?", files=()) -> Message:
    return message_post_from_hub(case=case, user=member.user, text=text, files=list(files))


def agent_reply(case: Case, agent=None, text: str = "We are on it.", *, internal: bool = False,
                files=()) -> Message:
    agent = agent or AgentFactory()
    return message_send_from_agent(case=case, user=agent.user, text=text, internal=internal,
                                   files=list(files))


def inbound_email(case: Case, *, text: str = "Hello", html: str = "", sender: str = "shop@example.com",
                  name: str = "Shop Owner", attachments=()) -> Message:
    """A mail threaded to `case` by the case token in its subject."""
    mail = EmailMessage()
    mail["From"] = f"{name} <{sender}>"
    mail["To"] = "support@casehub.localhost"
    mail["Subject"] = f"Re: {case.subject} [case:{case.pk}]"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@example.com>"
    mail.set_content(text)
    if html:
        mail.add_alternative(html, subtype="html")
    for filename, content, maintype, subtype in attachments:
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    result = message_receive_email(raw=mail.as_bytes())
    assert result.message is not None and result.case.pk == case.pk, result
    return result.message


def hub_member(**kwargs) -> MerchantUser:
    return MerchantUserFactory(**kwargs)


def hub_token(member_or_user) -> str:
    user = getattr(member_or_user, "user", member_or_user)
    return hub_services.hub_token_create(user=user)[1]
