"""Typed helpers around ``strawberry.field`` (its keyword form is untyped for mypy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import strawberry

F = TypeVar("F", bound=Callable[..., Any])


def described(description: str) -> Callable[[F], F]:
    """``@strawberry.field(description=...)`` for resolvers, typed for mypy --strict."""
    decorator: Callable[[F], F] = strawberry.field(description=description)
    return decorator


def mutation(description: str) -> Callable[[F], F]:
    """``@strawberry.mutation(description=...)``, typed for mypy --strict."""
    decorator: Callable[[F], F] = strawberry.mutation(description=description)
    return decorator
