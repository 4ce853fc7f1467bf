"""factory-boy factories shared by all test packages."""

from tests.factories.accounts import AgentFactory, MerchantFactory, MerchantUserFactory, UserFactory

__all__ = ["AgentFactory", "MerchantFactory", "MerchantUserFactory", "UserFactory"]
