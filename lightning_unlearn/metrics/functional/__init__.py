"""Functional forms of the unlearning metrics."""

__all__: list[str] = []
