"""API routes of the inventory app (mounted at /api/v1/inventory/). Items have explicit
(store_id, sku) routes because their primary key is composite."""

from django.urls import path

from apps.inventory.api import views

app_name = "inventory"

urlpatterns = [
    path("stores/", views.StoreListView.as_view(), name="store-list"),
    path("stores/<int:store_id>/feeds/", views.FeedCreateView.as_view(), name="feed-create"),
    path("stores/<int:store_id>/feeds/csv/", views.FeedCsvCreateView.as_view(), name="feed-csv-create"),
    path("stores/<int:store_id>/items/", views.StoreItemListView.as_view(), name="item-list"),
    # <path:> because SKUs may contain "/" ("AB/123"); the trailing slash still ends the route.
    path("stores/<int:store_id>/items/<path:sku>/", views.StoreItemStatusView.as_view(), name="item-status"),
    path("stores/<int:store_id>/runs/", views.StoreRunListView.as_view(), name="run-list"),
    path("runs/<int:run_id>/", views.RunDetailView.as_view(), name="run-detail"),
    path("signals/", views.SignalCreateView.as_view(), name="signal-create"),
]
