"""Callbacks: recorders, stopping rules, evaluators and the relearning probe."""

__all__: list[str] = []
