import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

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
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory, roles=["agent"])
    display_name = factory.LazyAttribute(lambda a: a.user.username.title())
    # Room for what tests that do not exercise capacity assign by hand (the database refuses more).
    capacity = 50
    presence = Presence.AVAILABLE
    heartbeat_at = factory.LazyFunction(timezone.now)
    skills = factory.LazyFunction(list)

    @factory.post_generation
    def queues(self, create, extracted, **kwargs):
        """AgentFactory(queues=[queue]) or AgentFactory(queues={queue: 2}) (queue -> priority)."""
        if create and extracted:
            from apps.assignment.models import AgentQueue

            links = extracted if isinstance(extracted, dict) else dict.fromkeys(extracted, 1)
            AgentQueue.objects.bulk_create(
                [AgentQueue(agent=self, queue=q, priority=p) for q, p in links.items()])


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
