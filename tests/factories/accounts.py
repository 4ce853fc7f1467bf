import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.assignment.models import Agent, Presence
from apps.merchants.models import Merchant, MerchantUser


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pass")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        if create and extracted:
            self.groups.add(*Group.objects.filter(name__in=extracted))
            if set(extracted) & {"agent", "ops", "queue-config-editor"}:
                self.is_staff = True
                self.save(update_fields=["is_staff"])


class AgentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Agent

    user = factory.SubFactory(UserFactory, roles=["agent"])
    display_name = factory.LazyAttribute(lambda a: a.user.username.title())
    capacity = 3
    presence = Presence.AVAILABLE
    skills = factory.LazyFunction(list)


class MerchantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Merchant

    external_id = factory.Sequence(lambda n: f"m-{n:05d}")
    name = factory.Faker("company")


class MerchantUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MerchantUser

    user = factory.SubFactory(UserFactory, roles=["merchant"])
    merchant = factory.SubFactory(MerchantFactory)
