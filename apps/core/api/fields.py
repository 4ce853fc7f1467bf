"""Date-time inputs that cannot reach the database out of range: a DRF serializer field and a
django-filter filter, both reading ISO 8601 through `apps.core.input.parse_datetime_strict`."""

from __future__ import annotations

import datetime

import django_filters
from django import forms
from django.utils import timezone
from rest_framework import serializers

from apps.core.input import parse_datetime_strict


class StrictDateTimeField(serializers.DateTimeField):
    """DateTimeField whose text input is ISO 8601 only, with a UTC offset within 18 hours and a
    UTC value within years 1 to 9999 (DRF passes a +20:00 offset or year 0 on to the database)."""

    def to_internal_value(self, value):
        if isinstance(value, str):
            try:
                zone = self.default_timezone() or datetime.UTC
                parsed = parse_datetime_strict(value, default_timezone=zone)
            except ValueError as exc:
                raise serializers.ValidationError(str(exc), code="invalid") from None
            return self.enforce_timezone(parsed)
        return super().to_internal_value(value)


class StrictIsoDateTimeFormField(forms.DateTimeField):
    """The form field behind StrictIsoDateTimeFilter: ISO 8601 text to an aware UTC datetime."""

    def to_python(self, value):
        if value in self.empty_values:
            return None
        if isinstance(value, datetime.datetime):
            return super().to_python(value)
        try:
            return parse_datetime_strict(str(value), default_timezone=timezone.get_current_timezone())
        except ValueError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from None


class StrictIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    """IsoDateTimeFilter (same schema type) that refuses offsets PostgreSQL cannot take (16 hours
    and more: a DataError, so a 500) and values outside years 1 to 9999 with a field-level 400."""

    field_class = StrictIsoDateTimeFormField
