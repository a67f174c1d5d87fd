"""Unlearning metrics as torchmetrics Metrics; the maths lives in ``metrics.functional``."""

__all__: list[str] = []
