"""Unlearning metrics as torchmetrics Metrics; the maths lives in ``metrics.functional``."""

from lightning_unlearn.metrics.accuracy import SplitAccuracy, UnlearningAccuracy
from lightning_unlearn.metrics.divergence import EntropyDistance, PredictionKL
from lightning_unlearn.metrics.gap import AverageGap, Runtime
from lightning_unlearn.metrics.mia import LossMIA, MIAEfficacy
from lightning_unlearn.metrics.weights import ParameterChange, PrototypeSimilarity

__all__: list[str] = [
    "AverageGap",
    "EntropyDistance",
    "LossMIA",
    "MIAEfficacy",
    "ParameterChange",
    "PredictionKL",
    "PrototypeSimilarity",
    "Runtime",
    "SplitAccuracy",
    "UnlearningAccuracy",
]
