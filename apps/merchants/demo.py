"""Demo merchants, each with one API user."""

from apps.core.demo import demo_user
from apps.core.progress import Progress
from apps.merchants.models import Merchant, MerchantUser

DEMO_MERCHANTS = (
    ("m-1001", "Corner Mart"), ("m-1002", "Green Basket Grocery"), ("m-1003", "QuickStop Convenience"),
    ("m-1004", "Harbor Pharmacy"), ("m-1005", "Daily Fresh Market"),
)


def seed(*, progress: Progress) -> dict[str, int]:
    for n, (external_id, name) in enumerate(DEMO_MERCHANTS, start=1):
        merchant, _ = Merchant.objects.get_or_create(external_id=external_id, defaults={"name": name})
        user = demo_user(f"merchant{n}", "merchant", roles=("merchant",), staff=False)
        MerchantUser.objects.get_or_create(user=user, defaults={"merchant": merchant})
    return {"merchants": Merchant.objects.count(), "merchant_users": MerchantUser.objects.count()}
