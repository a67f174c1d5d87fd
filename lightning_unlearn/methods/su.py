"""SU: single-pass Self-Unlearning with Selective Probability Adjustment (SULI paper)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.methods.soft_targets import SoftTargetMethod, soft_kl, spa_targets


def check_epsilon(epsilon: float) -> float:
    if not isinstance(epsilon, (int, float)) or not 0.0 <= float(epsilon) < 1.0:
        raise ValueError(f"`epsilon` (SPA probability left on the forgotten label) must be in [0, 1), got {epsilon!r}.")
    return float(epsilon)


@register_method("SU")
class SU(SoftTargetMethod):
    """SU — Self-Unlearning: distil the original model's SPA-adjusted outputs on D_f.

    **Needs only the forget set D_f** (no retain data): the model is fine-tuned on the
    forget samples alone, towards its own output distribution with the forgotten label's
    probability set to ε and the rest redistributed proportionally (Selective Probability
    Adjustment, SPA):

    ``P'(y_f) = ε``, ``P'(y) = P(y)·(1−ε)/S`` for ``y ≠ y_f``, ``S = Σ_{y≠y_f} P(y)``;
    loss ``KL(P' ‖ P_current)`` (batchmean). The targets are computed ONCE, at the start,
    from the original model over the whole D_f (no grad), and looked up per batch by
    dataset index; they are stored in the checkpoint.

    SU is the single-step baseline of SULI (:class:`~lightning_unlearn.methods.suli.SULI`),
    which processes D_f in entropy-ordered layers.

    Paper: *Fine-Grained and Efficient Self-Unlearning with Layered Iteration* (SULI; Lyu et al., IJCAI 2025).

    Deviations:
        - ``y_f`` is the sample's ground-truth label, not the current argmax: a misclassified
          forget sample is still moved away from its own label, for every forgetting scenario.
        - SPA is computed from the logits (softmax over the classes other than ``y_f``),
          which equals ``P(y)/S`` but stays defined when ``S`` underflows to 0.
        - Defaults (Adam, lr 3e-4, 8 epochs) were tuned on MNIST-5k/LeNet-5; the paper
          tunes the learning rate per task and does not report it.

    Args:
        model: the trained classifier (deep-copied; the original is never modified).
        checkpoint: optional weights for ``model``.
        num_classes: size of the label space (default: the head's ``out_features``).
        head: dotted path of the final linear layer (default: found automatically).
        optimizer: ``adam`` (paper), ``adamw`` or ``sgd``.
        lr: learning rate.
        weight_decay: weight decay.
        momentum: SGD momentum.
        max_epochs: epochs over D_f.
        val_splits: splits whose accuracy is logged after every epoch.
        seed: seed of the method's random choices.
        epsilon: SPA probability left on the forgotten label, in ``[0, 1)`` (default 0).

    Raises:
        ValueError: if ``epsilon`` is outside ``[0, 1)`` or for invalid base arguments.
        HeadNotFoundError: if the model has no usable linear head (e.g. weight tying).

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = SU(LeNet5(), epsilon=0.0, max_epochs=2)
    """

    data_need = "forget"
    paper = (
        "SU: Fine-Grained and Efficient Self-Unlearning with Layered Iteration"
        " (SULI paper, Lyu et al., IJCAI 2025), single-step baseline."
    )
    limitation = (
        "it trains on D_f alone, with nothing holding the retained classes: on a model with BatchNorm they can fall past"
        " the guard before a whole class is forgotten (measured: All-CNN on MNIST-5k, 24 of 30 class-wise requests"
        " served over originals of seeds 0-2, against 30 of 30 on LeNet-5); on such a model try freeze_batchnorm=True"
        " with lr=3e-5 (29 of 30 on the same All-CNN requests; not the default: lr 3e-5 served 18 of 20 on LeNet-5),"
        " or NegGradPlus, UGradSLPlus or SalUn, which hold the retained classes with D_r."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        lr: float = 3e-4,
        max_epochs: int = 8,
        epsilon: float = 0.0,
        **kwargs: Any,
    ) -> None:
        epsilon = check_epsilon(epsilon)
        super().__init__(model, lr=lr, max_epochs=max_epochs, **kwargs)
        self.epsilon = epsilon

    def compute_targets(self) -> None:
        out = self.split_outputs("forget")
        self.set_targets(out.indices, spa_targets(out.logits, out.labels, self.epsilon))

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        return soft_kl(self(batch[0]), self.lookup_targets(batch))
