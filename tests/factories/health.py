"""Factories of the health app. Specs go through the admission service, like every other path."""

import factory
from django.utils import timezone

from apps.health.models import CheckResult, CheckStatus, HealthSpec
from apps.health.services import health_spec_apply


def check_doc(name: str, type_: str = "database", **fields) -> dict:
    return {"name": name, "type": type_, **fields}


class HealthSpecFactory(factory.django.DjangoModelFactory):
    """`HealthSpecFactory(checks=[check_doc("db")])` applies a spec document through the service."""

    class Meta:
        model = HealthSpec

    name = factory.Sequence(lambda n: f"spec-{n}")
    checks = factory.LazyFunction(lambda: [check_doc("db")])

    @classmethod
    def _create(cls, model_class, *, name, checks, enabled=True, **kwargs):
        spec, _ = health_spec_apply(name=name, document={"checks": checks}, enabled=enabled)
        return spec


class CheckResultFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CheckResult

    status = CheckStatus.SUCCESS
    duration_ms = 12.5
    message = "ok"
    created_at = factory.LazyFunction(timezone.now)
