"""API routes of the assignment app."""

urlpatterns: list = []
