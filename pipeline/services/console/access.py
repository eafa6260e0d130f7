"""What a signed-in operator may see and do: tenants and a role, checked by every route.

Each operator has a set of tenants (or all of them) and a role (``viewer`` < ``agent`` <
``admin``). The guard (:mod:`pipeline.services.console.guard`) puts the operator's
:class:`Access` on the request; every route takes it as a parameter of type
:data:`Scope` and uses it for everything it reads or does:

- a list shows only what :meth:`Access.visible` keeps (items of the operator's tenants);
- one thing of another tenant is not found (404, whether or not it exists:
  :meth:`Access.one`), so an operator cannot learn that it exists;
- an action first checks the role (:meth:`Access.require`: 403, nothing produced).

``create_app`` refuses to build a console with a route that does not take a
:data:`Scope` (:func:`unscoped_routes`), so a page added later cannot forget it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from pipeline.config.sections import ALL_TENANTS, ConsoleOperator, OperatorRole
from pipeline.errors import OperatorActionRefused

ROLES: tuple[OperatorRole, ...] = ("viewer", "agent", "admin")
"""The roles, each allowed what the ones before it are."""


class Tenanted(Protocol):
    @property
    def tenant(self) -> str | None: ...


T = TypeVar("T", bound=Tenanted)


@dataclass(frozen=True, slots=True)
class Access:
    """One operator's reach: ``tenants`` None means every tenant."""

    operator: str
    role: OperatorRole
    tenants: frozenset[str] | None

    @classmethod
    def of(cls, operator: str, entry: ConsoleOperator) -> Access:
        tenants = None if ALL_TENANTS in entry.tenants else frozenset(entry.tenants)
        return cls(operator, entry.role, tenants)

    @property
    def all_tenants(self) -> bool:
        return self.tenants is None

    def sees(self, tenant: str | None) -> bool:
        """Whether the operator sees what belongs to ``tenant`` (None: a tenant nobody
        knows, such as a dead letter that cannot be decoded, seen only with all tenants)."""
        return self.tenants is None or (tenant is not None and tenant in self.tenants)

    def may(self, role: OperatorRole) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def require(self, role: OperatorRole, action: str) -> None:
        """403 unless the operator's role is ``role`` or above."""
        if not self.may(role):
            raise OperatorActionRefused(
                403,
                f"operator {self.operator} is a {self.role}: to {action} takes the {role} role",
            )

    def visible(self, items: Iterable[T]) -> list[T]:
        """The items of the operator's tenants, in their order."""
        return [item for item in items if self.sees(item.tenant)]

    def one(self, item: T | None, missing: str) -> T:
        """``item`` when the operator sees it; 404 with ``missing`` when it is None or of
        another tenant (the same answer: the operator does not learn that it exists)."""
        if item is None or not self.sees(item.tenant):
            raise OperatorActionRefused(404, missing)
        return item

    def tenant_choices(self, tenants: Iterable[str]) -> list[str]:
        """Of ``tenants``, those the operator sees, sorted."""
        return sorted(t for t in set(tenants) if self.sees(t))


def operator_access(request: Request) -> Access:
    """The signed-in operator's access, which the guard put on the request."""
    access = request.scope.get("state", {}).get("access")
    assert isinstance(access, Access), "the guard lets no request through without one"
    return access


Scope = Annotated[Access, Depends(operator_access)]
"""The parameter type every console route takes: ``async def page(who: Scope)``."""


def unscoped_routes(routes: Iterable[object], public: Iterable[str]) -> list[str]:
    """``METHOD path`` of every route outside ``public`` that takes no :data:`Scope`."""
    open_paths = set(public)
    missing = []
    for route in routes:
        if (
            isinstance(route, APIRoute)
            and route.path not in open_paths
            and not _depends_on_access(route.dependant)
        ):
            missing += [f"{method} {route.path}" for method in sorted(route.methods or ())]
    return missing


def _depends_on_access(dependant: Dependant) -> bool:
    return any(d.call is operator_access or _depends_on_access(d) for d in dependant.dependencies)
