"""Permission classes of the cases API, based on Django model permissions (roles)."""

from rest_framework.permissions import BasePermission


class CasePermission(BasePermission):
    """Reading needs cases.view_case, creating cases.add_case, notes cases.add_caseevent, changes
    (transitions, legacy transfers) cases.change_case."""

    action_perms = {
        "list": "cases.view_case",
        "retrieve": "cases.view_case",
        "create": "cases.add_case",
        "transition": "cases.change_case",
        "notes": "cases.add_caseevent",
        "legacy_transfer": "cases.change_case",
    }

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        perm = self.action_perms.get(getattr(view, "action", None) or "")
        return bool(perm) and user.has_perm(perm)


class CanIngestSignals(BasePermission):
    """Ops users and API clients holding cases.ingest_signal."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("cases.ingest_signal"))
