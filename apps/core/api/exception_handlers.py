"""Maps ApplicationError and Django's ValidationError to DRF responses with field-level errors;
Django's request limits and input that failed deeper down become 4xx answers, never a 500."""

import logging
import traceback

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from apps.core.errors import (
    ApplicationError,
    abandon_failed_transaction,
    request_limit_error,
    unchecked_input_error,
)

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    if isinstance(exc, ApplicationError):
        return _application_error_response(exc)
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    edge = request_limit_error(exc)
    if edge is None:
        edge = unchecked_input_error(exc, filtering=_raised_while_filtering(exc))
        if edge is not None:
            abandon_failed_transaction(exc)
            view = context.get("view")
            # The client gets a 400; the log says which view lacks the edge check that should have.
            logger.warning(
                "Unchecked input reached %s: %s: %s",
                type(view).__name__ if view is not None else "a view", type(exc).__name__, exc,
            )
    if edge is not None:
        set_rollback()
        return _application_error_response(edge)
    return drf_exception_handler(exc, context)


def _application_error_response(exc: ApplicationError) -> Response:
    body = {"detail": exc.message, "code": exc.code}
    if exc.errors:
        body["errors"] = exc.errors
    return Response(body, status=exc.status_code)


def _raised_while_filtering(exc: BaseException) -> bool:
    # DRF filter backends and django-filter FilterSets both filter in `filter_queryset`.
    return any(frame.f_code.co_name == "filter_queryset" for frame, _ in traceback.walk_tb(exc.__traceback__))
