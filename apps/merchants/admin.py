from django.contrib import admin

from apps.merchants.models import Merchant, MerchantUser


class MerchantUserInline(admin.TabularInline):
    model = MerchantUser
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["name", "external_id", "is_active", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "external_id"]
    inlines = [MerchantUserInline]


@admin.register(MerchantUser)
class MerchantUserAdmin(admin.ModelAdmin):
    list_display = ["user", "merchant", "created_at"]
    list_select_related = ["user", "merchant"]
    search_fields = ["user__username", "merchant__name", "merchant__external_id"]
    raw_id_fields = ["user"]
