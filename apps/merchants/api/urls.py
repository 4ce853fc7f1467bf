"""API routes of the merchants app."""

urlpatterns: list = []
