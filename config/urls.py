"""Top-level routes: admin, probes, the versioned API of each app, and its OpenAPI schema."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.assignment.api.urls import calls_urlpatterns
from apps.assignment.invitations import AgentInvitationView
from apps.assignment.workspace import workspace_view
from apps.core import views as core_views

urlpatterns = [
    # People who open the bare address are staff; merchants use the API.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    # The agent workspace: an admin page (its look and login) outside any one model's admin.
    path("admin/assignment/workspace/", admin.site.admin_view(workspace_view), name="assignment_workspace"),
    path("admin/", admin.site.urls),
    path("invite/<uidb64>/<token>/", AgentInvitationView.as_view(), name="agent_invitation"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("apps.cases.api.urls")),
    path("api/v1/agent/", include("apps.assignment.api.urls")),
    path("api/v1/calls/", include(calls_urlpatterns)),
    path("api/v1/inventory/", include("apps.inventory.api.urls")),
    path("api/v1/health/", include("apps.health.api.urls")),
    path("api/v1/hub/", include("apps.merchants.api.urls")),
    path("hub/", include("apps.merchants.urls")),
    path("", include("apps.health.urls")),
]

admin.site.site_header = "Casehub"
admin.site.site_title = "Casehub"
admin.site.index_title = "Support operations"
admin.site.site_url = None  # no public site: "/" is the admin itself

# API clients get a JSON 404 for a URL that matches no route, as they do for a missing object.
handler404 = "apps.core.views.not_found"
