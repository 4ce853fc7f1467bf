"""Inventory admin: stores (CSV upload, item lookup), runs with progress bars, the held-price review
queue, guardrails, catalog, models and history. Actions and forms call services.

InventoryItem has a composite primary key, which Django's admin cannot register, so its two ops
pages (review queue, "why is this item not shown?") are custom views hung off the store admin.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.core.errors import ApplicationError
from apps.core.scheduling import task_send_on_commit
from apps.inventory import selectors, services
from apps.inventory.models import (
    CatalogItem,
    IngestionRun,
    ItemRejection,
    OosModel,
    PriceGuardrail,
    RunStatus,
    ShopperSignal,
    Store,
)


def progress_bar(run: IngestionRun) -> str:
    pct = run.progress_pct
    color = {"failed": "#ba2121", "succeeded": "#417690"}.get(run.status, "#79aec8")
    return format_html(
        '<div class="inventory-progress" title="{} of {} items" style="width:120px;background:#eee;'
        'border:1px solid #ccc;height:12px;display:inline-block;vertical-align:middle">'
        '<div style="width:{}%;background:{};height:100%"></div></div> {}%',
        run.items_done,
        run.items_total,
        pct,
        color,
        pct,
    )


class CsvUploadForm(forms.Form):
    file = forms.FileField(
        help_text="CSV with columns sku, available, price or unit_price; optional quantity, aisle."
    )


class ItemLookupForm(forms.Form):
    sku = forms.CharField(max_length=64)


@admin.register(Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "external_id",
        "merchant",
        "price_markup_bps",
        "max_price_ratio",
        "sla_seconds",
        "tools",
    ]
    list_select_related = ["merchant"]
    search_fields = ["name", "external_id", "merchant__external_id"]
    raw_id_fields = ["merchant"]

    @admin.display(description="tools")
    def tools(self, store: Store) -> str:
        return format_html(
            '<a href="{}">Upload CSV</a> · <a href="{}">Why is an item not shown?</a>',
            reverse("admin:inventory_store_csv_upload", args=[store.pk]),
            reverse("admin:inventory_store_item_lookup", args=[store.pk]),
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("review-queue/", wrap(self.review_queue_view), name="inventory_review_queue"),
            path("<int:store_id>/csv-upload/", wrap(self.csv_upload_view), name="inventory_store_csv_upload"),
            path(
                "<int:store_id>/item-lookup/", wrap(self.item_lookup_view), name="inventory_store_item_lookup"
            ),
            *super().get_urls(),
        ]

    def _context(self, request, title: str, **extra) -> dict:
        return {**self.admin_site.each_context(request), "title": title, "opts": self.model._meta, **extra}

    def _store(self, store_id: int) -> Store:
        try:
            return selectors.store_get(store_id=store_id)
        except ApplicationError as exc:
            raise Http404(exc.message) from exc

    def csv_upload_view(self, request, store_id: int):
        if not request.user.has_perm("inventory.add_ingestionrun"):
            raise PermissionDenied
        store = self._store(store_id)
        form = CsvUploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                run = services.feed_submit_csv_upload(store=store, upload=upload)
            except ApplicationError as exc:
                for field, errors in exc.errors.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                self.message_user(
                    request, f"Feed accepted: run {run.pk} with {run.items_total} rows is queued."
                )
                return HttpResponseRedirect(reverse("admin:inventory_ingestionrun_change", args=[run.pk]))
        return TemplateResponse(
            request,
            "admin/inventory/csv_upload.html",
            self._context(request, f"Upload a CSV feed for {store}", store=store, form=form),
        )

    def item_lookup_view(self, request, store_id: int):
        if not request.user.has_perm("inventory.view_inventoryitem"):
            raise PermissionDenied
        store = self._store(store_id)
        form = ItemLookupForm(request.GET or None)
        answer = selectors.item_status(store=store, sku=form.cleaned_data["sku"]) if form.is_valid() else None
        return TemplateResponse(
            request,
            "admin/inventory/item_lookup.html",
            self._context(
                request, f"Why is an item not shown? — {store}", store=store, form=form, answer=answer
            ),
        )

    def review_queue_view(self, request):
        if not request.user.has_perm("inventory.view_inventoryitem"):
            raise PermissionDenied
        if request.method == "POST":
            if not request.user.has_perm("inventory.change_inventoryitem"):
                raise PermissionDenied
            keys = []
            for value in request.POST.getlist("item"):
                store_id, _, sku = value.partition("|")
                if store_id.isdigit() and sku:
                    keys.append((int(store_id), sku))
            decision = request.POST.get("decision")
            if decision == "approve":
                count = services.held_items_approve(keys=keys, user=request.user.get_username())
                self.message_user(request, f"Approved {count} held price(s): now published.")
            elif decision == "reject":
                count = services.held_items_reject(keys=keys, user=request.user.get_username())
                self.message_user(request, f"Rejected {count} held price(s).", level=messages.WARNING)
            return HttpResponseRedirect(request.get_full_path())
        page = Paginator(selectors.held_items(), 100).get_page(request.GET.get("p"))
        return TemplateResponse(
            request,
            "admin/inventory/review_queue.html",
            self._context(
                request,
                "Held prices to review",
                page=page,
                can_change=request.user.has_perm("inventory.change_inventoryitem"),
            ),
        )


@admin.register(PriceGuardrail)
class PriceGuardrailAdmin(admin.ModelAdmin):
    list_display = ["category", "store", "max_ratio", "ceiling_cents"]
    list_select_related = ["store"]
    search_fields = ["category"]
    raw_id_fields = ["store"]


@admin.register(CatalogItem)
class CatalogItemAdmin(admin.ModelAdmin):
    list_display = ["sku", "name", "brand", "category", "unit", "average_weight", "merchant"]
    list_select_related = ["merchant"]
    list_filter = ["unit"]
    search_fields = ["=sku", "name"]
    raw_id_fields = ["merchant"]
    show_full_result_count = False


@admin.register(IngestionRun)
class IngestionRunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "store",
        "source",
        "status",
        "progress",
        "received",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "held",
        "predicted_oos",
        "duration_s",
        "sla_met",
        "attempts",
        "heartbeat_at",
    ]
    list_select_related = ["store"]
    list_filter = ["status", "source", "sla_met"]
    search_fields = ["=id", "store__name", "store__external_id"]
    actions = ["requeue"]
    readonly_fields = ["progress", "raw_payload"]
    fields = [
        "store",
        "source",
        "status",
        "progress",
        "attempts",
        "max_attempts",
        "batch_size",
        "batches_done",
        "items_total",
        "items_done",
        "received",
        "created",
        "updated",
        "unchanged",
        "rejected",
        "rejected_by_reason",
        "held",
        "predicted_oos",
        "prediction",
        "heartbeat_at",
        "created_at",
        "started_at",
        "finished_at",
        "duration_s",
        "sla_met",
        "error",
        "lake_position",
        "round_started_at",
        "raw_payload",
        "payload_bytes",
        "payload_expires_at",
    ]
    show_full_result_count = False

    @admin.display(description="progress")
    def progress(self, run: IngestionRun) -> str:
        return progress_bar(run)

    @admin.display(description="raw payload")
    def raw_payload(self, run: IngestionRun) -> str:
        if not run.payload_path:
            return "purged (past its time-to-live)" if run.payload_bytes else "—"
        return format_html(
            '<a href="{}">download</a> <code>{}</code>',
            reverse("admin:inventory_ingestionrun_payload", args=[run.pk]),
            run.payload_path,
        )

    def get_urls(self):
        return [
            path(
                "<int:run_id>/payload/",
                self.admin_site.admin_view(self.payload_view),
                name="inventory_ingestionrun_payload",
            ),
            *super().get_urls(),
        ]

    def payload_view(self, request, run_id: int):
        """The feed exactly as it arrived, for troubleshooting a run (kept until its TTL)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        path = IngestionRun.objects.filter(pk=run_id).values_list("payload_path", flat=True).first()
        storage = services.payload_storage()
        if not path or not storage.exists(path):
            raise Http404("No raw payload: unknown run, or purged past its time-to-live.")
        return FileResponse(
            storage.open(path, "rb"), as_attachment=True, filename=path.rsplit("/", 1)[-1]
        )

    def get_readonly_fields(self, request, obj=None):
        return self.fields  # runs are written by the pipeline only

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Re-queue selected failed runs", permissions=["change"])
    def requeue(self, request, queryset):
        done = 0
        for run in queryset.filter(status=RunStatus.FAILED):
            try:
                services.ingestion_run_requeue(run=run)
            except ApplicationError as exc:  # one run refused does not undo or stop the others
                self.message_user(request, exc.message, level=messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"Re-queued {done} failed run(s).")


@admin.register(OosModel)
class OosModelAdmin(admin.ModelAdmin):
    list_display = [
        "version",
        "algorithm",
        "held_out_accuracy",
        "train_samples",
        "test_samples",
        "is_current",
        "created_at",
    ]
    exclude = ["blob"]
    readonly_fields = [
        "version",
        "algorithm",
        "features",
        "train_samples",
        "test_samples",
        "accuracy",
        "is_current",
        "created_at",
    ]

    @admin.display(description="accuracy (held-out)", ordering="accuracy")
    def held_out_accuracy(self, model: OosModel) -> str:
        return f"{model.accuracy:.1%}"

    def has_add_permission(self, request) -> bool:
        return False

    def get_urls(self):
        return [
            path("train/", self.admin_site.admin_view(self.train_view), name="inventory_oosmodel_train"),
            *super().get_urls(),
        ]

    def train_view(self, request):
        if request.method != "POST" or not request.user.has_perm("inventory.add_oosmodel"):
            raise PermissionDenied
        from apps.inventory.tasks import oos_model_train

        # Training is the Celery task's job (the same one beat runs daily), not the request's.
        task_send_on_commit(oos_model_train)
        self.message_user(
            request,
            "Training queued on the ingestion workers: the new version appears here with its "
            "held-out accuracy when it is done (with too little history the current one stays).",
        )
        return HttpResponseRedirect(reverse("admin:inventory_oosmodel_changelist"))


@admin.register(ShopperSignal)
class ShopperSignalAdmin(admin.ModelAdmin):
    list_display = ["created_at", "store", "sku", "found", "merchant_available", "hours_since_in_stock"]
    list_select_related = ["store"]
    list_filter = ["found"]
    search_fields = ["=sku"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ItemRejection)
class ItemRejectionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "store_id", "sku", "run_id", "reason"]
    search_fields = ["=sku", "reason"]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False
