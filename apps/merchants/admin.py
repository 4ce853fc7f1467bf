"""Merchants and their Support Hub users. A merchant user works in the hub only, so a staff account
cannot be made one (the admin site refuses merchant users in any case)."""

from django import forms
from django.contrib import admin
from knox.models import AuthToken

from apps.merchants.models import Merchant, MerchantUser

# django-rest-knox registers an admin that mints a token for any user and lists token digests.
# Hub tokens are issued only by the hub login (merchant users, throttled sign-in), so it is taken
# out; knox comes before this app in INSTALLED_APPS, so its admin is registered by now.
if admin.site.is_registered(AuthToken):
    admin.site.unregister(AuthToken)


class MerchantUserForm(forms.ModelForm):
    class Meta:
        model = MerchantUser
        fields = ["user", "merchant"]

    def clean_user(self):
        user = self.cleaned_data["user"]
        if user.is_staff or user.is_superuser:
            raise forms.ValidationError(
                "A merchant user uses the API only: this account is staff. Create a separate account "
                "for the merchant, or take the staff flag off this one first.", code="staff_merchant")
        return user


class MerchantUserInline(admin.TabularInline):
    model = MerchantUser
    form = MerchantUserForm
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
    form = MerchantUserForm
    list_display = ["user", "merchant", "created_at"]
    list_select_related = ["user", "merchant"]
    search_fields = ["user__username", "merchant__name", "merchant__external_id"]
    raw_id_fields = ["user"]
