"""`CaseFilterSet`: filters of the case list, including dynamic (queue-specific) fields.

Dynamic fields, two forms (documented in the OpenAPI schema):
- `fields={"reason": "late", "order_total": 120}`: JSON containment (`fields @> ...`), GIN-indexed.
- `field.<name>=<value>`: one field equals a value. The value is matched as every JSON type it
  could be ("120" -> string "120" or number 120; "true" -> boolean or string), each a
  containment, OR-ed: still served by the GIN `jsonb_path_ops` index.
- `field.<name>__gt|gte|lt|lte=<number>`: numeric range on one field. Not index-backed on its
  own; combine it with a selective filter (queue, status, containment).
Numbers are read only from short decimal text within float range (`apps.core.input` rules), so
`1e999999` is never expanded into a million-digit integer.
"""

from __future__ import annotations

import copy
import math
import re
from decimal import Decimal, InvalidOperation

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.http import QueryDict
from rest_framework.exceptions import ValidationError

from apps.cases.models import Case, Channel, Location, Priority, Status
from apps.core.api.fields import StrictIsoDateTimeFilter
from apps.core.input import BIGINT_MAX, JSONDocumentError, json_document_load

DYNAMIC_PARAM = re.compile(r"^field\.(?P<name>[A-Za-z_][A-Za-z0-9_]{0,63}?)(?:__(?P<op>gt|gte|lt|lte))?$")
# Decimal notation in ASCII digits only: Decimal() alone would also read "1_000", "NaN" and
# non-ASCII digits, which no JSON number is written as.
NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# Checked on the text, before any conversion: a 1e999999 would otherwise become an integer of a
# million digits (seconds of CPU) that cannot even be sent to the database.
NUMBER_MAX_CHARS = 64
NUMBER_MAX_EXPONENT = 308  # a float's range; beyond it no stored number can compare
NUMBER_MESSAGE = (f"A number is required: decimal notation of at most {NUMBER_MAX_CHARS} characters, "
                  f"between -1e{NUMBER_MAX_EXPONENT} and 1e{NUMBER_MAX_EXPONENT}.")


class JSONObjectField(forms.CharField):
    """A JSON object in a query parameter, under the rules of every JSON document the API takes
    (depth, finite numbers, storable text): what jsonb could not hold cannot be contained in it."""

    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return None
        try:
            parsed = json_document_load(value)
        except JSONDocumentError as exc:
            raise forms.ValidationError(
                [f"{path}: {message}" if path != "non_field_errors" else message
                 for path, messages in exc.errors.items() for message in messages]
                or [exc.message]
            ) from None
        if not isinstance(parsed, dict):
            raise forms.ValidationError("Must be a JSON object.")
        return parsed


class JSONObjectFilter(django_filters.Filter):
    field_class = JSONObjectField


def number_of(raw: str) -> int | float | None:
    """The JSON number a query-string value spells (None when it spells none we can compare):
    whole numbers within bigint as int, the rest as a finite float."""
    text = raw.strip()
    if len(text) > NUMBER_MAX_CHARS or NUMBER_TEXT.fullmatch(text) is None:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:  # an exponent beyond even Decimal's range
        return None
    if number and abs(number.adjusted()) > NUMBER_MAX_EXPONENT:
        return None  # checked before int(): the digits are never spelled out
    if number == number.to_integral_value() and abs(number) <= BIGINT_MAX:
        return int(number)
    value = float(number)
    return value if math.isfinite(value) else None


def value_candidates(raw: str) -> list:
    """Every JSON value a query-string value may stand for. Text that spells a number no stored
    value can hold (1e5000, 40 digits) is matched as text only: long digit strings are ids."""
    candidates: list = [raw]
    if raw in ("true", "false"):
        candidates.append(raw == "true")
    elif raw == "null":
        candidates.append(None)
    else:
        number = number_of(raw)
        if number is not None:
            candidates.append(number)
    return candidates


def dynamic_field_q(name: str, raw: str, op: str | None) -> Q:
    if op is None:
        query = Q()
        for value in value_candidates(raw):
            query |= Q(fields__contains={name: value})
        return query
    value = number_of(raw)
    if value is None:
        raise ValidationError({f"field.{name}__{op}": [NUMBER_MESSAGE]})
    return Q(**{f"fields__{name}__{op}": value})


class CaseFilterSet(django_filters.FilterSet):
    # Explicit labels: django-filter otherwise derives each from model metadata on every request.
    queue = django_filters.CharFilter(field_name="queue__slug", label="Queue slug")
    # django-filter's multiple-choice filters add DISTINCT, in case the field crosses a to-many join.
    # Status is a column of the case itself, so no row can repeat, and the DISTINCT made every count
    # a hash aggregate over all the selected columns.
    status = django_filters.MultipleChoiceFilter(choices=Status.choices, label="Status", distinct=False)
    priority = django_filters.TypedChoiceFilter(choices=Priority.choices, coerce=int, label="Priority")
    channel = django_filters.ChoiceFilter(choices=Channel.choices, label="Channel")
    location = django_filters.ChoiceFilter(choices=Location.choices, label="Location")
    # Bounded like the column: a 23-digit id is a 400 here, not a failed query.
    assigned_agent = django_filters.NumberFilter(field_name="assigned_agent_id", label="Assigned agent id",
                                                 min_value=1, max_value=BIGINT_MAX, decimal_places=0)
    unassigned = django_filters.BooleanFilter(field_name="assigned_agent", lookup_expr="isnull",
                                              label="Unassigned")
    merchant_ref = django_filters.CharFilter(label="Merchant external id")
    customer_ref = django_filters.CharFilter(label="Customer id")
    delivery_ref = django_filters.CharFilter(label="Delivery id")
    created_after = StrictIsoDateTimeFilter(field_name="created_at", lookup_expr="gte",
                                            label="Created at or after")
    created_before = StrictIsoDateTimeFilter(field_name="created_at", lookup_expr="lt",
                                             label="Created before")
    fields = JSONObjectFilter(
        method="filter_fields_contains", label="Dynamic fields containment",
        help_text='Dynamic fields containment, a JSON object: {"reason": "late"} (GIN-indexed).',
    )

    class Meta:
        model = Case
        fields: list[str] = []

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        # As django-filter's, but filters are copied shallowly: a deepcopy of every filter (with
        # its choices) per request was most of this FilterSet's cost on the hot list path.
        if queryset is None:
            queryset = self._meta.model._default_manager.all()
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = {name: copy.copy(f) for name, f in self.base_filters.items()}
        for filter_ in self.filters.values():
            filter_.model = queryset.model
            filter_.parent = self
            if filter_.method:
                filter_.method = filter_.method  # rebinds its FilterMethod to this copy

    def get_form_class(self):
        # The form depends only on the declared filters: build it once per class, not per request.
        cls = type(self)
        if "_form_class" not in cls.__dict__:
            cls._form_class = super().get_form_class()
        return cls._form_class

    def filter_fields_contains(self, queryset: QuerySet, name: str, value: dict) -> QuerySet:
        return queryset.filter(fields__contains=value)

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        queryset = super().filter_queryset(queryset)
        for key in self.data:
            match = DYNAMIC_PARAM.match(key)
            if match is not None and "__" in match["name"]:
                match = None  # "a__b" would reach into nested keys or lookups: not a field name
            if match is None:
                if key.startswith("field."):
                    raise ValidationError({key: ["Use field.<name> or field.<name>__gt|gte|lt|lte."]})
                continue
            for raw in self.data.getlist(key) if hasattr(self.data, "getlist") else [self.data[key]]:
                queryset = queryset.filter(dynamic_field_q(match["name"], raw, match["op"]))
        return queryset
