"""A registry of unlearning methods by name (case-insensitive)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", bound=type)

METHODS: dict[str, type] = {}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def register_method(name: str) -> Callable[[T], T]:
    """Class decorator that registers an :class:`UnlearningMethod` under ``name``."""

    def decorator(cls: T) -> T:
        key = _key(name)
        if key in METHODS and METHODS[key] is not cls:
            raise ValueError(f"A method is already registered as {name!r}: {METHODS[key].__name__}.")
        METHODS[key] = cls
        cls.method_name = name  # type: ignore[attr-defined]
        return cls

    return decorator


def available_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(cls.method_name for cls in METHODS.values())  # type: ignore[attr-defined]


def get_method(name: str) -> type:
    """The method class registered as ``name`` (``"SULI"``, ``"finetune"``, ``"neg-grad-plus"`` ...).

    Raises:
        ValueError: for an unknown name; the message lists the registered names.
    """
    try:
        return METHODS[_key(name)]
    except KeyError:
        raise ValueError(f"Unknown unlearning method {name!r}. Registered methods: {', '.join(available_methods())}.") from None
