"""Random Label: fine-tune on the forget set relabelled with random wrong labels."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import OptimizerCallable
from torch import Tensor, nn
from torch.nn import functional as F

from lightning_unlearn.data.seeding import index_random_other_label
from lightning_unlearn.methods.base import UnlearningMethod
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.models.classifier import OptimizerName

RANDOM_LABEL_STREAM = 0x52AB


@register_method("RandomLabel")
class RandomLabel(UnlearningMethod):
    """Fine-tune the classifier on D_f where every sample carries a random label other than its own.

    The "Random Label" (RL) baseline compared in the Prototype Surgery, SULI and UGradSL
    papers: the model is misguided on the forget samples and forgets them. Each sample's
    random label is drawn once, uniformly among the other ``K − 1`` classes, keyed by its
    dataset index (:func:`~lightning_unlearn.data.seeding.index_random_other_label`), so the
    labels do not depend on batch order or the number of processes.

    Cite: Golatkar, Achille, Soatto. "Eternal Sunshine of the Spotless Net", CVPR 2020;
    Hayase et al. / Graves, Nagisetty, Ganesh. "Amnesiac Machine Learning", AAAI 2021.

    Deviations:
        - Forget data only (as described in the Prototype Surgery and SULI papers); SalUn's variant
          adds D_r (see :class:`SalUn`).
        - The random label is never the true label, and is fixed per sample for the whole run.

    Args:
        model: the trained classifier.
        optimizer: optimiser name.
        lr: learning rate.
        max_epochs: passes over D_f.
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = RandomLabel(LeNet5(), lr=1e-3, max_epochs=2)
    """

    data_need = "forget"
    paper = (
        "Random Label (Golatkar et al., CVPR 2020; Graves et al., AAAI 2021),"
        " baseline in the Prototype Surgery, SULI and UGradSL papers."
    )
    limitation = (
        "it trains D_f towards random labels alone, with nothing holding the retained classes: on larger models it"
        " damages them past the guard before a whole class is forgotten (measured: All-CNN on MNIST-5k, 2 of 10"
        " classes served; a 3x step budget ended by the guard instead); SalUn adds the retain term."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        optimizer: OptimizerName | OptimizerCallable = "sgd",
        lr: float = 1e-4,
        max_epochs: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, optimizer=optimizer, lr=lr, max_epochs=max_epochs, **kwargs)

    def random_labels(self, indices: Tensor, labels: Tensor) -> Tensor:
        """The fixed random wrong label of every sample (keyed by dataset index and ``seed``)."""
        return index_random_other_label(indices, labels, self.num_classes, self.hparams.seed, RANDOM_LABEL_STREAM)

    def unlearning_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, y, index = batch
        return F.cross_entropy(self(x), self.random_labels(index, y))
