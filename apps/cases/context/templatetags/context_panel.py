"""`{% context_panel case %}`: the context panel of a case, on any page (admin case page, workspace)."""

from django import template

from apps.cases.context.panel import case_context_panel

register = template.Library()


@register.inclusion_tag("context/_panel.html")
def context_panel(case):
    return {"items": case_context_panel(case) if case is not None else []}
