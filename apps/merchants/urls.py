"""Routes of the Support Hub page (mounted at /hub/)."""

from django.urls import path

from apps.merchants import views

urlpatterns = [
    path("", views.hub_page, name="hub"),
    path("login/", views.HubLoginPage.as_view(), name="hub-login-page"),
    path("logout/", views.hub_logout, name="hub-logout-page"),
]
