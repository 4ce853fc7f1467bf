"""`HubCaseFilterSet`: the filters of a merchant's case list (status, dates, subject search)."""

from __future__ import annotations

import django_filters

from apps.cases.models import Case, Status
from apps.core.api.fields import StrictIsoDateTimeFilter


class HubCaseFilterSet(django_filters.FilterSet):
    # A column of the case itself: no join can repeat rows, so no DISTINCT (a hash over every column).
    status = django_filters.MultipleChoiceFilter(choices=Status.choices, label="Status (repeatable)",
                                                 distinct=False)
    created_after = StrictIsoDateTimeFilter(field_name="created_at", lookup_expr="gte",
                                            label="Created at or after")
    created_before = StrictIsoDateTimeFilter(field_name="created_at", lookup_expr="lt",
                                             label="Created before")
    # On the list's `last_activity_at` annotation (apps.merchants.selectors.hub_case_list).
    last_activity_after = StrictIsoDateTimeFilter(field_name="last_activity_at", lookup_expr="gte",
                                                  label="Last activity at or after")
    last_activity_before = StrictIsoDateTimeFilter(field_name="last_activity_at", lookup_expr="lt",
                                                   label="Last activity before")
    search = django_filters.CharFilter(field_name="subject", lookup_expr="icontains", max_length=300,
                                       label="Subject contains (case-insensitive)")

    class Meta:
        model = Case
        fields: list[str] = []
