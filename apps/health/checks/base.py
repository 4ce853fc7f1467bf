"""The check interface, its outcome, and the registry of check types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from apps.health.models import CheckStatus


@dataclass
class CheckOutcome:
    status: str
    message: str = ""
    # New incremental state to persist (None: keep the stored state unchanged).
    state: dict | None = None
    # The check itself knows it is inside a grace window (e.g. a worker that just started).
    in_grace: bool = False

    @classmethod
    def success(cls, message: str = "", **kwargs) -> CheckOutcome:
        return cls(CheckStatus.SUCCESS.value, message, **kwargs)

    @classmethod
    def failure(cls, message: str, **kwargs) -> CheckOutcome:
        return cls(CheckStatus.FAILURE.value, message, **kwargs)

    @classmethod
    def error(cls, message: str, **kwargs) -> CheckOutcome:
        return cls(CheckStatus.ERROR.value, message, **kwargs)


@dataclass
class CheckContext:
    """What a check instance knows about itself when it runs."""

    check_id: int
    name: str
    params: dict
    timeout_s: float
    grace_period_s: float = 0.0
    state: dict = field(default_factory=dict)
    lease_token: str = ""
    # The host this run happens on (settings.CASEHUB_HOST_NAME).
    host: str = ""


class Check:
    """Base class of every check type.

    `params_schema` (JSON Schema of the `params` object) is enforced at admission;
    `validate_params` adds the rules a schema cannot express (regexes compile, URLs parse).
    `run()` must finish within `ctx.timeout_s` where it can (pass it to sockets and clients);
    the runner records a timeout and stops waiting either way. `ctx.state` is the state the
    check's last run returned (on this host, for a `host_local` type).
    """

    type_name: ClassVar[str] = ""
    params_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    # Reads the runner's own files (a log): the check runs only on the host it is pinned to, and
    # the runner keeps its state per host (an offset means nothing in another machine's file).
    host_local: ClassVar[bool] = False

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.params = ctx.params

    @classmethod
    def validate_params(cls, params: dict) -> dict[str, list[str]]:
        """Type-specific errors keyed by parameter name (empty when valid)."""
        return {}

    def run(self) -> CheckOutcome:  # pragma: no cover - every registered type overrides it
        raise TypeError(f"{type(self).__name__} does not implement run()")


REGISTRY: dict[str, type[Check]] = {}


def _identity(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


def register(cls: type[Check]) -> type[Check]:
    if not cls.type_name:
        raise ValueError(f"{cls.__name__} has no type_name")
    existing = REGISTRY.get(cls.type_name)
    # Re-importing the same class (a module reload) is fine; two classes claiming one name is not.
    if existing is not None and _identity(existing) != _identity(cls):
        raise ValueError(f"check type {cls.type_name!r} is already registered")
    REGISTRY[cls.type_name] = cls
    return cls


def get_type(name: str) -> type[Check] | None:
    return REGISTRY.get(name)
