"""API routes of the health app."""

urlpatterns: list = []
