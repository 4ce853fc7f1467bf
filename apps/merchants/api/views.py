"""Support Hub API (/api/v1/hub/): merchant users log in for a token, list and open their cases,
read and answer each case's thread, mark what they read and download attachments. Views are thin:
every query is scoped to the caller's merchant by apps.merchants.selectors, so another merchant's
case, message or attachment answers exactly as a missing one does (404)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate, user_logged_in
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from knox.models import AuthToken
from rest_framework import exceptions, generics, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.cases.models import Case, Message
from apps.core.api.parsers import FormParser, JSONParser, MultiPartParser
from apps.core.auth import LockedOut
from apps.core.errors import NotFound, PayloadTooLarge
from apps.core.idempotency import idempotent
from apps.core.input import storable_text_error
from apps.merchants import selectors, services
from apps.merchants.api.authentication import HubTokenAuthentication
from apps.merchants.api.filters import HubCaseFilterSet
from apps.merchants.api.permissions import IsHubUser
from apps.merchants.api.serializers import (
    HubCaseDetailSerializer,
    HubCaseOpenSerializer,
    HubCaseSerializer,
    HubMessageSerializer,
    HubReadResultSerializer,
    HubReadSerializer,
    HubReplySerializer,
    LoginSerializer,
    TokenSerializer,
)
from apps.merchants.api.throttles import HubLoginThrottle, HubThrottle, HubWriteThrottle
from apps.merchants.models import Merchant

FULL_PARAMETER = OpenApiParameter(
    "full", OpenApiTypes.BOOL, OpenApiParameter.QUERY, required=False,
    description="`1`/`true`: each message's `html_document` is the whole message (quoted history "
                "included) and `text_body` is filled in.",
)
UNAVAILABLE = OpenApiResponse(description="Opening cases from the hub is not set up (no such queue).")
TRUE_VALUES = {"1", "true", "yes", "on"}


class HubView(APIView):
    """Support Hub, for merchant users only: authenticate with a token from /api/v1/hub/auth/login/
    (`Authorization: Token <token>`) or the /hub/ page's session (with its CSRF token). Requests are
    rate-limited per user (429 with Retry-After)."""

    authentication_classes = [HubTokenAuthentication, SessionAuthentication]
    permission_classes = [IsHubUser]
    throttle_classes = [HubThrottle, HubWriteThrottle]
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    @property
    def merchant(self) -> Merchant:
        return selectors.merchant_for_user(self.request.user)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        # After authentication and throttling, before the body is read: a post far over what the
        # hub takes is refused without being spooled to disk.
        if request.method == "POST" and _content_length(request) > _post_limit():
            raise PayloadTooLarge(_post_limit())

    def case_or_404(self, case_id):
        case = selectors.hub_case_get(self.merchant, case_id)
        if case is None:
            raise NotFound("Case not found.")
        return case


def _post_limit() -> int:
    return settings.HUB_POST_MAX_BYTES


def _content_length(request) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0  # the edge middleware has refused it already


# Authentication -------------------------------------------------------------------------------

class HubLoginView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [HubLoginThrottle]
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        summary="Exchange a merchant user's username and password for an API token",
        description="Failed attempts count towards the same sign-in lockout as the /hub/ page and the "
                    "admin (429 with Retry-After once locked). Staff accounts get no hub token (403).",
        request=LoginSerializer, responses={200: TokenSerializer}, operation_id="hub_auth_login",
        tags=["hub"],
    )
    def post(self, request):
        serializer = LoginSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username, password = serializer.validated_data["username"], serializer.validated_data["password"]
        if storable_text_error(username) or storable_text_error(password):
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        # The throttled sign-in of the whole project (apps.core.auth): django-axes counts a failure
        # and refuses a locked-out username from this address.
        user = authenticate(request=request, username=username, password=password)
        if user is None:
            if getattr(request, "axes_locked_out", False):
                raise LockedOut(request)
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        merchant = selectors.merchant_for_user(user)
        if merchant is None or not merchant.is_active:
            raise exceptions.PermissionDenied(IsHubUser.message)
        token, text = services.hub_token_create(user=user)
        user_logged_in.send(sender=user.__class__, request=request, user=user)
        return Response(TokenSerializer({"token": text, "expiry": token.expiry}).data)

    def get_authenticate_header(self, request):
        return HubTokenAuthentication().authenticate_header(request)


class HubLogoutView(APIView):
    authentication_classes = [HubTokenAuthentication]
    permission_classes = [IsHubUser]
    throttle_classes = [HubThrottle]

    @extend_schema(summary="Revoke the token this request is made with", request=None,
                   responses={204: None}, operation_id="hub_auth_logout", tags=["hub"])
    def post(self, request):
        if isinstance(request.auth, AuthToken):  # a test client's forced login carries no token
            services.hub_token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class HubLogoutAllView(HubLogoutView):
    @extend_schema(summary="Revoke every token of the calling user", request=None,
                   responses={204: None}, operation_id="hub_auth_logout_all", tags=["hub"])
    def post(self, request):
        services.hub_tokens_revoke_all(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# Cases ----------------------------------------------------------------------------------------

class HubCaseListView(HubView, generics.GenericAPIView):
    serializer_class = HubCaseSerializer
    filterset_class = HubCaseFilterSet

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator has no merchant
            return Case.objects.none()
        return selectors.hub_case_list(self.merchant)

    @extend_schema(summary="Your merchant's cases, newest first, with your unread counts",
                   responses=HubCaseSerializer(many=True), operation_id="hub_cases_list", tags=["hub"])
    def get(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        unread = selectors.unread_counts(user=request.user, case_ids=[case.pk for case in page])
        for case in page:
            case.unread_count = unread.get(case.pk, 0)
        return self.get_paginated_response(HubCaseSerializer(page, many=True).data)

    @extend_schema(
        summary="Open a case with its first message (and attachments)",
        request={"multipart/form-data": HubCaseOpenSerializer, "application/json": HubCaseOpenSerializer},
        responses={201: HubCaseDetailSerializer, 503: UNAVAILABLE}, operation_id="hub_cases_create",
        tags=["hub"],
    )
    @idempotent
    def post(self, request):
        serializer = HubCaseOpenSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = services.hub_case_open(user=request.user, merchant=self.merchant, **serializer.validated_data)
        case = selectors.hub_case_get(self.merchant, case.pk)
        return Response(_case_detail(case, request.user), status=status.HTTP_201_CREATED)


def _case_detail(case: Case, user) -> dict:
    """`case` as hub_case_list annotates it."""
    case.unread_count = selectors.unread_counts(user=user, case_ids=[case.pk]).get(case.pk, 0)
    case.activity = selectors.hub_case_activity(case)
    return HubCaseDetailSerializer(case).data


class HubCaseDetailView(HubView):
    @extend_schema(summary="One of your cases with what happened to it", responses=HubCaseDetailSerializer,
                   operation_id="hub_cases_retrieve", tags=["hub"])
    def get(self, request, case_id):
        return Response(_case_detail(self.case_or_404(case_id), request.user))


class HubThreadView(HubView, generics.GenericAPIView):
    serializer_class = HubMessageSerializer

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Message.objects.none()
        return selectors.hub_thread(case=self.case, user=self.request.user)

    @extend_schema(summary="The case's messages, oldest first", parameters=[FULL_PARAMETER],
                   responses=HubMessageSerializer(many=True), operation_id="hub_messages_list", tags=["hub"])
    def get(self, request, case_id):
        self.case = self.case_or_404(case_id)
        full = request.query_params.get("full", "").lower() in TRUE_VALUES
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(HubMessageSerializer(page, many=True, context={"full": full}).data)

    @extend_schema(
        summary="Reply on the case, with attachments",
        description="Files are checked by their content, not their name; limits per file and per message "
                    "answer 400 by field, a body over the post limit 413.",
        request={"multipart/form-data": HubReplySerializer, "application/json": HubReplySerializer},
        responses={201: HubMessageSerializer}, operation_id="hub_messages_create", tags=["hub"],
    )
    @idempotent
    def post(self, request, case_id):
        case = self.case_or_404(case_id)
        serializer = HubReplySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = services.hub_message_post(user=request.user, case=case, **serializer.validated_data)
        message = selectors.hub_thread(case=case, user=request.user).get(pk=message.pk)
        return Response(HubMessageSerializer(message).data, status=status.HTTP_201_CREATED)


class HubCaseReadView(HubView):
    @extend_schema(
        summary="Mark the case's messages read, all or up to one",
        request=HubReadSerializer, responses={200: HubReadResultSerializer}, operation_id="hub_cases_read",
        tags=["hub"],
    )
    def post(self, request, case_id):
        case = self.case_or_404(case_id)
        serializer = HubReadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        up_to = serializer.validated_data.get("up_to")
        if up_to is not None and selectors.hub_message_in_case(case=case, message_id=up_to) is None:
            raise exceptions.ValidationError({"up_to": ["Not a message of this case."]})
        services.hub_case_mark_read(user=request.user, case=case, up_to=up_to)
        return Response(_read_result(request.user, case))


class HubMessageReadView(HubView):
    @extend_schema(summary="Mark one message read", request=None, responses={200: HubReadResultSerializer},
                   operation_id="hub_messages_read", tags=["hub"])
    def post(self, request, case_id, message_id):
        case = self.case_or_404(case_id)
        message = selectors.hub_message_in_case(case=case, message_id=message_id)
        if message is None:
            raise NotFound("Message not found.")
        services.hub_message_mark_read(user=request.user, message=message)
        return Response(_read_result(request.user, case))


def _read_result(user, case) -> dict:
    unread = selectors.unread_counts(user=user, case_ids=[case.pk]).get(case.pk, 0)
    return HubReadResultSerializer({"unread_count": unread}).data


# Attachments ----------------------------------------------------------------------------------

class HubAttachmentView(HubView):
    @extend_schema(
        summary="Download an attachment",
        description="Always as a download (`Content-Disposition: attachment`), with the type its content "
                    "was sniffed as and `X-Content-Type-Options: nosniff`.",
        responses={(200, "*/*"): OpenApiTypes.BINARY}, operation_id="hub_attachments_download", tags=["hub"],
    )
    def get(self, request, attachment_id):
        attachment = selectors.hub_attachment_get(self.merchant, attachment_id)
        if attachment is None:
            raise NotFound("Attachment not found.")
        return attachment_response(attachment)


def attachment_response(attachment) -> FileResponse:
    """A stored attachment streamed as a download that no browser renders or sniffs."""
    response = FileResponse(attachment.file.open("rb"), as_attachment=True, filename=attachment.filename,
                            content_type=attachment.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    # Opened directly anyway (a saved link), it runs nothing and loads nothing.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response
