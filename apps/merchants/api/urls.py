"""Support Hub API routes (mounted at /api/v1/hub/)."""

from django.urls import path

from apps.merchants.api import views

urlpatterns = [
    path("auth/login/", views.HubLoginView.as_view(), name="hub-login"),
    path("auth/logout/", views.HubLogoutView.as_view(), name="hub-logout"),
    path("auth/logout-all/", views.HubLogoutAllView.as_view(), name="hub-logout-all"),
    path("cases/", views.HubCaseListView.as_view(), name="hub-cases"),
    path("cases/<uuid:case_id>/", views.HubCaseDetailView.as_view(), name="hub-case"),
    path("cases/<uuid:case_id>/messages/", views.HubThreadView.as_view(), name="hub-case-messages"),
    path("cases/<uuid:case_id>/messages/<int:message_id>/read/", views.HubMessageReadView.as_view(),
         name="hub-message-read"),
    path("cases/<uuid:case_id>/read/", views.HubCaseReadView.as_view(), name="hub-case-read"),
    path("attachments/<int:attachment_id>/", views.HubAttachmentView.as_view(), name="hub-attachment"),
]
