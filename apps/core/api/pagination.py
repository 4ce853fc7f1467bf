"""Page-number pagination of the API: the default one, and one whose count stops at a cap for
lists that grow without bound (cases)."""

from __future__ import annotations

import hashlib

import redis
from django.conf import settings
from django.core.cache import cache
from django.core.paginator import EmptyPage, Page, PageNotAnInteger
from django.core.paginator import Paginator as DjangoPaginator
from django.db import connections
from django.utils.functional import cached_property
from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

# Measured on 1,000,000 cases (bench/case_search.py), a dynamic field + status matching 83,000:
# counting 1,001 of them takes about 4 ms, 10,001 about 25 ms, all of them about 200 ms.


def count_cap() -> int:
    return settings.API_COUNT_CAP


def _cache_call(method, *args):
    """The cache only saves work here: with Redis down, the list counts as it would without it."""
    try:
        return method(*args)
    except (redis.RedisError, OSError):
        return None


class DefaultPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class CappedPage(Page):
    """A page of a list whose size is not known: whether a next page exists is seen, not computed."""

    def __init__(self, object_list, number, paginator, *, more: bool):
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more


class CappedCountPaginator(DjangoPaginator):
    """Counts at most `cap` + 1 rows (`SELECT COUNT(*) FROM (... LIMIT cap + 1)`): an exact count
    of a broad filter over millions of rows costs more than the page itself.

    Under the cap it behaves as Django's paginator. Over it `count` is the cap, `capped` is true,
    and pages past the cap stay reachable: a page reads one row more to know whether another
    follows, since the number of pages is unknown.
    """

    def __init__(self, object_list, per_page, *, cap: int | None = None, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self.cap = count_cap() if cap is None else cap
        self._pages_seen = 0

    @cached_property
    def _counted(self) -> int:
        # Unordered: the order of the rows cannot change how many there are, and an ORDER BY under
        # the LIMIT would make the database find the first rows by that order before counting.
        if not hasattr(self.object_list, "order_by"):
            return len(self.object_list)
        limited = self.object_list.order_by()[: self.cap + 1]
        # "Over the cap" is remembered for a while, by the query's SQL (per tenant: the cache's
        # key function): reaching the cap reads cap + 1 matching rows (about 4 ms at a million
        # cases), and a list over it a minute ago almost always still is. Exact counts under the
        # cap are never kept: they are cheap, and a user expects them to move at once.
        sql, params = limited.query.sql_with_params()
        composed = connections[limited.db].ops.compose_sql(sql, params)
        key = "capped-count:" + hashlib.sha256(composed.encode()).hexdigest()
        if _cache_call(cache.get, key):
            return self.cap + 1
        counted = limited.count()
        if counted > self.cap:
            _cache_call(cache.set, key, True, settings.API_CAPPED_COUNT_CACHE_SECONDS)
        return counted

    @property
    def capped(self) -> bool:
        return self._counted > self.cap

    @cached_property
    def count(self) -> int:
        return min(self._counted, self.cap)

    @property
    def num_pages(self) -> int:
        # Pages known to exist: all within the cap, and past it those a page read has shown.
        known = super().num_pages
        return max(known, self._pages_seen) if self.capped else known

    def validate_number(self, number) -> int:
        if not self.capped:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger(self.error_messages["invalid_page"]) from None
        if number < 1:
            raise EmptyPage(self.error_messages["min_page"])
        return number

    def page(self, number) -> Page:
        number = self.validate_number(number)
        if not self.capped:
            return super().page(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        if not rows and number > 1:
            raise EmptyPage(self.error_messages["no_results"])
        more = len(rows) > self.per_page
        self._pages_seen = max(self._pages_seen, number + more)
        return CappedPage(rows[: self.per_page], number, self, more=more)


class CappedCountPagination(DefaultPagination):
    """Pages of a list that may hold millions of rows: `count` stops at a cap
    (`settings.API_COUNT_CAP`) and `count_capped` says when it did. `next` still leads past it."""

    django_paginator_class = CappedCountPaginator

    def get_page_number(self, request, paginator):
        page_number = super().get_page_number(request, paginator)
        if paginator.capped and request.query_params.get(self.page_query_param) in self.last_page_strings:
            raise NotFound(f"The last page is unknown: there are more than {paginator.cap} results. "
                           "Follow `next`, or narrow the filters.")
        return page_number

    def get_paginated_response(self, data):
        return Response({
            "count": self.page.paginator.count,
            "count_capped": self.page.paginator.capped,
            "next": self.get_next_link(),
            "previous": self.get_previous_link(),
            "results": data,
        })

    def get_paginated_response_schema(self, schema):
        cap = count_cap()
        response = super().get_paginated_response_schema(schema)
        response["required"] = [*response["required"], "count_capped"]
        properties = response["properties"]
        response["properties"] = {
            "count": {
                "type": "integer", "example": 123,
                "description": f"Number of results, counted up to {cap}: when there are more, `count` is "
                               f"{cap} and `count_capped` is true.",
            },
            "count_capped": {
                "type": "boolean", "example": False,
                "description": "True when there are more results than `count` says; `next` still leads "
                               "to them (`page=last` is then refused).",
            },
            **{name: value for name, value in properties.items() if name != "count"},
        }
        return response
