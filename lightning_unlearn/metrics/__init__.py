"""Unlearning metrics as torchmetrics Metrics; the maths lives in ``metrics.functional``."""

from lightning_unlearn.metrics.accuracy import SplitAccuracy, UnlearningAccuracy
from lightning_unlearn.metrics.divergence import EntropyDistance, PredictionKL
from lightning_unlearn.metrics.gap import AverageGap, Runtime
from lightning_unlearn.metrics.mia import LossMIA, MIAEfficacy
from lightning_unlearn.metrics.per_example import KLOM, NeurIPSForgettingScore, ULiRA
from lightning_unlearn.metrics.weights import ParameterChange, PrototypeSimilarity

__all__: list[str] = [
    "AverageGap",
    "EntropyDistance",
    "KLOM",
    "LossMIA",
    "MIAEfficacy",
    "NeurIPSForgettingScore",
    "ParameterChange",
    "PredictionKL",
    "PrototypeSimilarity",
    "Runtime",
    "SplitAccuracy",
    "ULiRA",
    "UnlearningAccuracy",
]
