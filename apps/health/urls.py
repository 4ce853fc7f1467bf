"""Non-API routes of the health app (/metrics)."""

urlpatterns: list = []
