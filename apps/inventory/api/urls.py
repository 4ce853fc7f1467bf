"""API routes of the inventory app."""

urlpatterns: list = []
