"""`CaseFilterSet`: filters of the case list, including dynamic (queue-specific) fields.

Dynamic fields, two forms (documented in the OpenAPI schema):
- `fields={"reason": "late", "order_total": 120}`: JSON containment (`fields @> ...`), GIN-indexed.
- `field.<name>=<value>`: one field equals a value. The value is matched as every JSON type it
  could be ("120" -> string "120" or number 120; "true" -> boolean or string), each a
  containment, OR-ed: still served by the GIN `jsonb_path_ops` index.
- `field.<name>__gt|gte|lt|lte=<number>`: numeric range on one field. Not index-backed on its
  own; combine it with a selective filter (queue, status, containment).
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal, InvalidOperation

import django_filters
from django import forms
from django.db.models import Q, QuerySet
from django.http import QueryDict
from rest_framework.exceptions import ValidationError

from apps.cases.models import Case, Channel, Location, Priority, Status

DYNAMIC_PARAM = re.compile(r"^field\.(?P<name>[A-Za-z_][A-Za-z0-9_]{0,63}?)(?:__(?P<op>gt|gte|lt|lte))?$")


class JSONObjectField(forms.CharField):
    def clean(self, value):
        value = super().clean(value)
        if value in (None, ""):
            return None
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError("Must be a JSON object.") from exc
        if not isinstance(parsed, dict):
            raise forms.ValidationError("Must be a JSON object.")
        return parsed


class JSONObjectFilter(django_filters.Filter):
    field_class = JSONObjectField


def value_candidates(raw: str) -> list:
    """Every JSON value a query-string value may stand for."""
    candidates: list = [raw]
    if raw in ("true", "false"):
        candidates.append(raw == "true")
    elif raw == "null":
        candidates.append(None)
    else:
        try:
            number = Decimal(raw)
        except InvalidOperation:
            number = None
        if number is not None and number.is_finite():
            candidates.append(int(number) if number == number.to_integral_value() else float(number))
    return candidates


def dynamic_field_q(name: str, raw: str, op: str | None) -> Q:
    if op is None:
        query = Q()
        for value in value_candidates(raw):
            query |= Q(fields__contains={name: value})
        return query
    try:
        number = Decimal(raw)
    except InvalidOperation:
        raise ValidationError({f"field.{name}__{op}": ["A number is required."]}) from None
    value = int(number) if number == number.to_integral_value() else float(number)
    return Q(**{f"fields__{name}__{op}": value})


class CaseFilterSet(django_filters.FilterSet):
    # Explicit labels: django-filter otherwise derives each from model metadata on every request.
    queue = django_filters.CharFilter(field_name="queue__slug", label="Queue slug")
    status = django_filters.MultipleChoiceFilter(choices=Status.choices, label="Status")
    priority = django_filters.TypedChoiceFilter(choices=Priority.choices, coerce=int, label="Priority")
    channel = django_filters.ChoiceFilter(choices=Channel.choices, label="Channel")
    location = django_filters.ChoiceFilter(choices=Location.choices, label="Location")
    assigned_agent = django_filters.NumberFilter(field_name="assigned_agent_id", label="Assigned agent id")
    unassigned = django_filters.BooleanFilter(field_name="assigned_agent", lookup_expr="isnull",
                                              label="Unassigned")
    merchant_ref = django_filters.CharFilter(label="Merchant external id")
    customer_ref = django_filters.CharFilter(label="Customer id")
    delivery_ref = django_filters.CharFilter(label="Delivery id")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte",
                                                     label="Created at or after")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt",
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
