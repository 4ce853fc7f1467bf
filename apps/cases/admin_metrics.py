"""The support metrics dashboard in admin, for ops: trends per day, tables per queue and per agent
from the metric rollups, charts, filters by queue and date range, CSV of the same rows, and the
impact of proactive-signal experiments. Re-registers the CaseStats admin with the dashboard's URLs."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from apps.cases import experiments, selectors
from apps.cases import metric_definitions as defs
from apps.cases.admin import CaseStatsAdmin
from apps.cases.metrics import backlog
from apps.cases.models import CaseStats, Queue
from apps.core.roles import OPS

DEFAULT_DAYS = 30
MAX_DAYS = 366  # a year of day rows per chart; longer ranges belong to the lake
# Dates a dashboard can mean; also keeps date arithmetic away from year 1 and 9999.
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)
GROUPS = ("day", "queue", "agent")
RATIOS = ("aht_seconds", "time_to_resolve_seconds", "mtr", "dwr", "fcr", "time_to_first_offer_seconds",
          "time_to_first_response_seconds")
CSV_KEYS = {"day": ("day",), "queue": ("queue_id", "queue__slug"),
            "agent": ("agent_id", "agent__display_name")}
# Spreadsheets run a cell that starts with one of these as a formula: queue and agent names are text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class DashboardFilterForm(forms.Form):
    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    queues = forms.ModelMultipleChoiceField(
        queryset=Queue.objects.order_by("name"), required=False,
        widget=forms.SelectMultiple(attrs={"size": 4}), help_text="None selected: every queue.")

    def _clean_day(self, name: str) -> date | None:
        day = self.cleaned_data.get(name)
        if day is not None and not EARLIEST <= day <= LATEST:
            raise forms.ValidationError(f"Enter a date between {EARLIEST} and {LATEST}.")
        return day

    def clean_start(self):
        return self._clean_day("start")

    def clean_end(self):
        return self._clean_day("end")

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        end = data.get("end") or timezone.localdate()
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start date must not be after the end date.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data


def dashboard_rows(*, start: date, end: date, queue_ids: list[int] | None) -> dict[str, list[dict]]:
    """The dashboard's rows: one per day of the range (days without data hold zeros), per queue and
    per agent with data in it. Three grouped queries over the day rollups, whatever the range."""
    series = {by: selectors.metric_series(start=start, end=end, queue_ids=queue_ids, by=by) for by in GROUPS}
    by_day = {row["day"]: row for row in series["day"]}
    empty = {**dict.fromkeys(defs.COUNTERS, 0), **defs.ratios({})}
    days = [by_day.get(start + timedelta(n)) or {"day": start + timedelta(n), **empty}
            for n in range((end - start).days + 1)]
    return {"day": days, "queue": series["queue"], "agent": series["agent"]}


def _totals(rows: list[dict]) -> dict[str, Any]:
    summed = {name: sum(row[name] or 0 for row in rows) for name in defs.COUNTERS}
    return {**summed, **defs.ratios(summed)}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


COLUMNS = ("created", "resolved", "aht", "ttr", "mtr", "dwr", "fcr", "first_offer", "first_response",
           "sla_breaches", "offers_expired")  # the order of _row_header.html


def _display(row: dict) -> dict[str, Any]:
    """A row as the tables show it: text only (no per-cell localisation in the template, which
    escapes every value), by name and as `cells` in COLUMNS order."""
    shown = {
        "created": str(row["created"]), "resolved": str(row["resolved"]),
        "aht": _duration(row["aht_seconds"]), "ttr": _duration(row["time_to_resolve_seconds"]),
        "mtr": "–" if row["mtr"] is None else f"{row['mtr']:.2f}",
        "dwr": _share(row["dwr"]), "fcr": _share(row["fcr"]),
        "first_offer": _duration(row["time_to_first_offer_seconds"]),
        "first_response": _duration(row["time_to_first_response_seconds"]),
        "sla_breaches": str(row["first_response_breached"] + row["resolution_breached"]),
        "offers_expired": str(row["offers_expired"]),
    }
    return {**shown, "cells": [shown[name] for name in COLUMNS]}


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 2)


def _percent(value: float | None) -> float | None:
    return None if value is None else round(value * 100, 2)


def _pp(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f} pp"


def experiment_display(x: experiments.ExperimentImpact) -> dict[str, Any]:
    def group(g: experiments.GroupRate) -> dict[str, Any]:
        rate = "–" if g.rate is None else f"{_share(g.rate)} ({_share(g.ci_low)} to {_share(g.ci_high)})"
        return {"deliveries": g.deliveries, "followups": g.followups, "rate": rate}

    d = x.comparison
    if d.p_value is None:
        verdict = "needs both groups"
    elif d.significant:
        verdict = "fewer follow-ups with outreach" if d.difference < 0 else "more follow-ups with outreach"
    else:
        verdict = "no significant difference"
    return {
        "experiment": x.experiment, "treatment": group(x.treatment), "control": group(x.control),
        "difference": ("–" if d.difference is None
                       else f"{_pp(d.difference)} ({_pp(d.ci_low)} to {_pp(d.ci_high)})"),
        "p_value": "–" if d.p_value is None else (f"{d.p_value:.3f}" if d.p_value >= 0.001 else "< 0.001"),
        "significant": d.significant, "verdict": ("significant: " if d.significant else "") + verdict,
    }


def chart_data(days: list[dict]) -> dict[str, Any]:
    """Per-day series for the charts (apps/cases/static/cases/dashboard.js); None is a gap."""
    return {
        "labels": [row["day"].isoformat() for row in days],
        "aht_minutes": [_minutes(row["aht_seconds"]) for row in days],
        "ttr_minutes": [_minutes(row["time_to_resolve_seconds"]) for row in days],
        "dwr_percent": [_percent(row["dwr"]) for row in days],
        "fcr_percent": [_percent(row["fcr"]) for row in days],
        "mtr": [None if row["mtr"] is None else round(row["mtr"], 3) for row in days],
        "created": [row["created"] for row in days],
        "resolved": [row["resolved"] for row in days],
        "net": [row["created"] - row["resolved"] for row in days],
        "sla_breaches": [row["first_response_breached"] + row["resolution_breached"] for row in days],
        "offers_expired": [row["offers_expired"] for row in days],
    }


def csv_rows(by: str, rows: list[dict]) -> list[list[Any]]:
    """Header and rows of a CSV download: the keys of the group, every counter, every metric."""
    keys = CSV_KEYS[by]
    header = {"queue__slug": "queue", "agent__display_name": "agent"}
    out = [[header.get(k, k) for k in keys] + list(defs.COUNTERS) + list(RATIOS)]
    for row in rows:
        cells = [row[name] for name in (*keys, *defs.COUNTERS, *RATIOS)]
        out.append(["'" + c if isinstance(c, str) and c.startswith(_FORMULA_START) else c for c in cells])
    return out


class CaseStatsDashboardAdmin(CaseStatsAdmin):
    change_list_template = "admin/cases/metrics/casestats_change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.dashboard_view)
        return [path("dashboard/", view, name="cases_metrics_dashboard"), *super().get_urls()]

    @staticmethod
    def may_see_dashboard(request) -> bool:
        """Ops (and superusers): agents and queue-config editors work cases, not the floor's numbers."""
        user = request.user
        return user.is_superuser or (user.has_perm("cases.view_casestats")
                                     and user.groups.filter(name=OPS).exists())

    def changelist_view(self, request, extra_context=None):
        extra = dict(extra_context or {})
        if self.may_see_dashboard(request):
            extra["dashboard_url"] = reverse("admin:cases_metrics_dashboard")
        return super().changelist_view(request, extra_context=extra)

    def dashboard_view(self, request):
        if not self.may_see_dashboard(request):
            raise PermissionDenied
        form = DashboardFilterForm(request.GET)  # nothing chosen is valid: the defaults
        download = request.GET.get("csv")
        if download is not None and download not in GROUPS:
            return HttpResponse(f"csv must be one of {', '.join(GROUPS)}.", status=400,
                                content_type="text/plain")
        if not form.is_valid():
            if download:
                return HttpResponse("\n".join(m for ms in form.errors.values() for m in ms), status=400,
                                    content_type="text/plain")
            return self._render(request, form, status=400)
        values = form.cleaned_data
        # The inputs show the range in force, defaults included.
        form.data = form.data.copy()
        form.data["start"], form.data["end"] = values["start"].isoformat(), values["end"].isoformat()
        queues = list(values["queues"]) or None
        rows = dashboard_rows(start=values["start"], end=values["end"],
                              queue_ids=[q.pk for q in queues] if queues else None)
        if download:
            return self._csv(download, rows[download], values)
        return self._render(request, form, rows=rows, values=values, queues=queues)

    def _csv(self, by: str, rows: list[dict], values: dict) -> HttpResponse:
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        name = f"metrics-by-{by}-{values['start'].isoformat()}-{values['end'].isoformat()}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        csv.writer(response).writerows(csv_rows(by, rows))
        return response

    def _render(self, request, form, *, rows=None, values=None, queues=None, status=200):
        context = {**self.admin_site.each_context(request), "title": "Support metrics",
                   "opts": self.model._meta, "form": form, "max_days": MAX_DAYS}
        if rows is not None:
            slugs = {q.slug for q in queues} if queues else None
            open_now: dict[str, int] = {}
            for slug, _, n in backlog():
                if slugs is None or slug in slugs:
                    open_now[slug] = open_now.get(slug, 0) + n
            query = form.data.copy()  # the range in force, so the CSV matches the page
            query.pop("csv", None)
            context.update({
                "start": values["start"], "end": values["end"], "queues": queues,
                "totals": {**_display(_totals(rows["day"])), "backlog": str(sum(open_now.values()))},
                "days": [{"day": r["day"].isoformat(), **_display(r)} for r in rows["day"]],
                "per_queue": [{"name": r["queue__slug"], "backlog": str(open_now.get(r["queue__slug"], 0)),
                               **_display(r)} for r in rows["queue"]],
                "per_agent": [{"name": r["agent__display_name"], **_display(r)} for r in rows["agent"]],
                "chart": chart_data(rows["day"]),
                "experiments": [experiment_display(x) for x in
                                experiments.experiments_impact(selectors.experiment_impact())],
                "csv_links": {by: f"?{query.urlencode()}&csv={by}" for by in GROUPS},
            })
        return TemplateResponse(request, "admin/cases/metrics/dashboard.html", context, status=status)


admin.site.unregister(CaseStats)
admin.site.register(CaseStats, CaseStatsDashboardAdmin)
