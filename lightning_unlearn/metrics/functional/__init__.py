"""Functional forms of the unlearning metrics (the maths; the Metric classes hold state only)."""

from lightning_unlearn.metrics.functional.accuracy import split_accuracy, unlearning_accuracy
from lightning_unlearn.metrics.functional.divergence import entropy_distance, prediction_kl
from lightning_unlearn.metrics.functional.gap import GAP_KEYS, average_gap
from lightning_unlearn.metrics.functional.mia import loss_mia, mia_efficacy
from lightning_unlearn.metrics.functional.per_example import (
    klom,
    klom_per_example,
    logit_margin,
    logit_scaled_confidence,
    neurips_epsilons,
    neurips_forgetting_score,
    ulira,
)
from lightning_unlearn.metrics.functional.weights import parameter_change, prototype_similarity

__all__ = [
    "GAP_KEYS",
    "average_gap",
    "entropy_distance",
    "klom",
    "klom_per_example",
    "logit_margin",
    "logit_scaled_confidence",
    "loss_mia",
    "mia_efficacy",
    "neurips_epsilons",
    "neurips_forgetting_score",
    "parameter_change",
    "prediction_kl",
    "prototype_similarity",
    "split_accuracy",
    "ulira",
    "unlearning_accuracy",
]
