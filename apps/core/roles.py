"""The four roles as Django groups, and the permissions each needs.

Patterns: "app.*" (every permission of an app), "app.view_*" (every view permission of an
app), or an exact "app.codename". Permissions of models that do not exist are skipped, so a
role picks up new models as the apps grow.

Some rules hold per object on top of these, in the admin classes and API views: an agent changes
only their own Agent row, and of it only the presence (`assignment.change_own_presence`);
merchant users (MerchantUser) never enter the admin, whatever their flags
(apps.core.admin_site); inventory API data is scoped to a merchant user's own stores.
tests/core/test_roles.py holds the expected answer of every admin and API page for each role.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

AGENT, OPS, QUEUE_CONFIG_EDITOR, MERCHANT = "agent", "ops", "queue-config-editor", "merchant"
ROLES = (AGENT, OPS, QUEUE_CONFIG_EDITOR, MERCHANT)

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    # Agents work cases: read and update them, add notes, see queues, agents and merchants;
    # of agents they change only their own presence.
    AGENT: (
        "cases.view_*", "cases.add_case", "cases.change_case", "cases.add_caseevent",
        "assignment.view_*", "assignment.change_own_presence", "context.view_*",
        "merchants.view_*", "merchants.add_message",
        "inventory.view_*",
    ),
    # Ops run the platform: everything in the product apps, schedules, and user lists; they see
    # sign-in lockouts and lift one by deleting it. Only ops publish queue configs.
    OPS: (
        "cases.*", "cases.publish_queueconfig", "assignment.*", "context.*", "inventory.*", "merchants.*",
        "health.*",
        "django_celery_beat.*", "auth.view_user", "auth.view_group",
        "axes.view_*", "axes.delete_accessattempt",
    ),
    # Queue configuration editors change queue settings themselves, nothing else: they save
    # drafts of queue configs (add/change), which ops publish (cases.publish_queueconfig).
    QUEUE_CONFIG_EDITOR: (
        "cases.view_queue", "cases.change_queue", "cases.view_queueconfig",
        "cases.add_queueconfig", "cases.change_queueconfig",
    ),
    # Merchant users only use the Support Hub API, which scopes data by membership.
    MERCHANT: (),
}


def roles_sync_permissions(*, using: str = "default") -> None:
    from django.contrib.auth.models import Group, Permission

    permissions = list(
        Permission.objects.using(using).select_related("content_type")
        .values_list("id", "content_type__app_label", "codename")
    )
    for role, patterns in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.using(using).get_or_create(name=role)
        wanted = [
            pk for pk, app_label, codename in permissions
            if any(fnmatchcase(f"{app_label}.{codename}", pattern) for pattern in patterns)
        ]
        group.permissions.set(wanted)
