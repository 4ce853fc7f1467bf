"""A list page shaped by a serializer's own fields, from plain rows (`QuerySet.values()`).

DRF serialises a model instance field by field through `get_attribute` and friends, and the page
query first builds a model instance (with its joined relations) per row: for a 50-row page of
cases that was most of a list request's time. A list whose serializer is flat (plain fields,
relations shown by key or slug, attributes one relation away) reads just those columns as values
and keeps the serializer for what it is best at: the API's schema and each value's format.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from rest_framework import relations, serializers


class SerializerRows:
    """`lookups` to pass to `QuerySet.values()`, and `represent(rows)`, which returns what
    `serializer_class(instances, many=True).data` would for the same rows.

    Each field's row key follows its `source` (`a.b` becomes `a__b`); a slug field reads its slug
    through the relation (`queue__slug`) and a primary-key field the key itself. A value that is
    None is shown as None, as DRF does; any other goes through the field's `to_representation`,
    so dates, UUIDs and numbers are formatted in one place.
    """

    def __init__(self, serializer_class: type[serializers.Serializer]):
        self.serializer_class = serializer_class

    @cached_property
    def _plan(self) -> list[tuple[str, str, object]]:
        plan = []
        for field in self.serializer_class()._readable_fields:
            if isinstance(field, (relations.ManyRelatedField, serializers.BaseSerializer,
                                  serializers.SerializerMethodField)) or field.source == "*":
                raise TypeError(f"{self.serializer_class.__name__}.{field.field_name} is not a flat field.")
            key = "__".join(field.source_attrs)
            if isinstance(field, relations.SlugRelatedField):
                plan.append((field.field_name, f"{key}__{field.slug_field}", None))
            elif isinstance(field, relations.PrimaryKeyRelatedField):
                plan.append((field.field_name, key, None))
            else:
                plan.append((field.field_name, key, field.to_representation))
        return plan

    @property
    def lookups(self) -> list[str]:
        return list(dict.fromkeys(key for _name, key, _represent in self._plan))

    def represent(self, rows: Iterable[dict]) -> list[dict]:
        plan = self._plan
        return [
            {name: (None if (value := row[key]) is None else represent(value) if represent else value)
             for name, key, represent in plan}
            for row in rows
        ]
