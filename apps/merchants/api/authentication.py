"""API tokens of the Support Hub: django-rest-knox tokens (`Authorization: Token hub_<64 hex>`),
stored as a hash, expiring after REST_KNOX["TOKEN_TTL"], revoked by logout."""

from __future__ import annotations

import re
from hmac import compare_digest

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS, knox_settings
from rest_framework import exceptions


def token_shape() -> re.Pattern:
    length = knox_settings.AUTH_TOKEN_CHARACTER_LENGTH
    return re.compile(rf"{re.escape(knox_settings.TOKEN_PREFIX)}[0-9a-f]{{{length}}}")


class HubTokenAuthentication(TokenAuthentication):
    """knox's token authentication, with two differences: a token of the wrong shape is refused
    before any lookup (header bytes that are not hex could not be stored or decoded), and the user
    comes with their merchant membership, as a session's does (apps.core.auth.AccountBackend).
    Only the presented token is looked at: expired tokens of the user are removed at login."""

    def authenticate_credentials(self, token: bytes):
        text = token.decode("latin-1")
        if token_shape().fullmatch(text) is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        digest = hash_token(text)
        candidates = AuthToken.objects.filter(token_key=text[:CONSTANTS.TOKEN_KEY_LENGTH]).select_related(
            "user__merchant_membership__merchant")
        for auth_token in candidates:
            if not compare_digest(digest, auth_token.digest):
                continue
            if auth_token.expiry is not None and auth_token.expiry <= timezone.now():
                auth_token.delete()
                raise exceptions.AuthenticationFailed("Token expired: log in again for a new one.")
            return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed("Invalid token.")


class HubTokenScheme(OpenApiAuthenticationExtension):
    target_class = "apps.merchants.api.authentication.HubTokenAuthentication"
    name = "hubToken"

    def get_security_definition(self, auto_schema):
        scheme = build_bearer_security_scheme_object(
            header_name="Authorization", token_prefix=knox_settings.AUTH_HEADER_PREFIX)
        scheme["description"] = ("`Token hub_<64 hex>`, from POST /api/v1/hub/auth/login/; expires, and "
                                 "is revoked by logout or logout-all.")
        return scheme
