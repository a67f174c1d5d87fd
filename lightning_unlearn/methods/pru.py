"""PRU: Perception Revising Unlearning: probability redistribution + alternating E / C updates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from lightning_unlearn.data.seeding import index_uniform
from lightning_unlearn.methods.checks import check_number
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.methods.soft_targets import SoftTargetMethod, redistribute_probabilities, soft_kl
from lightning_unlearn.models.anatomy import set_requires_grad
from lightning_unlearn.optim import step_schedules
from lightning_unlearn.outputs import predict


def _pairwise_distances(x: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``x`` (zero-safe gradient)."""
    sq = x.pow(2).sum(dim=1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(1e-12)
    return d2.sqrt()


def cluster_losses(embeddings: Tensor, pseudo_labels: Tensor, eps: float = 1e-8) -> tuple[Tensor | None, Tensor | None]:
    """PRU's ``L_s`` (Eq. 4) and ``L_o`` (Eq. 3) over one batch.

    ``L_s`` is the mean L2 distance over pairs ``i ≠ j`` sharing a pseudo label (``None`` when
    no two samples share one); ``L_o = 1 / (d_o + eps)`` with ``d_o`` the mean distance between
    pairs of pseudo-class centroids (``None`` when the batch has a single pseudo class).

    Example:
        >>> e = torch.tensor([[0.0, 0.0], [0.0, 2.0], [3.0, 0.0], [3.0, 2.0]])
        >>> ls, lo = cluster_losses(e, torch.tensor([0, 0, 1, 1]))
        >>> round(float(ls), 4), round(float(lo), 4)
        (2.0, 0.3333)
    """
    x = embeddings.float()
    same = pseudo_labels[:, None] == pseudo_labels[None, :]
    same.fill_diagonal_(False)
    l_s = _pairwise_distances(x)[same].mean() if bool(same.any()) else None
    classes, inverse = pseudo_labels.unique(return_inverse=True)
    if classes.numel() < 2:
        return l_s, None
    onehot = nn.functional.one_hot(inverse, classes.numel()).to(x.dtype)
    centroids = (onehot.T @ x) / onehot.sum(dim=0)[:, None]
    rows, cols = torch.triu_indices(classes.numel(), classes.numel(), offset=1, device=x.device)
    d_o = _pairwise_distances(centroids)[rows, cols].mean()
    return l_s, 1.0 / (d_o + eps)


@register_method("PRU")
class PRU(SoftTargetMethod):
    """PRU — Perception Revising Unlearning: redistribute, then revise E and refine C in turn.

    **Needs only the forget set D_f** (no retain data). From the original, frozen model the
    probability of each forget sample's label is handed to the other classes in proportion
    (``p̃_k = p_k + p_f·p_k/Σ_{j≠f} p_j``, ``p̃_f = 0``; pseudo label ``ỹ = argmax p̃``),
    computed ONCE at the start over the whole D_f and cached by dataset index (checkpointed).
    Every epoch then runs the paper's two phases:

    1. **feature-extractor phase** (head C frozen): one pass over D_f, Lightning's training
       steps, with ``L_E = w_p·L_p + w_s·L_s + w_o·L_o``; ``L_p = KL(p̃ ‖ p̂)``, ``L_s`` the mean
       pairwise L2 distance between embeddings sharing a pseudo label, ``L_o = 1/(d_o + ε)``
       with ``d_o`` the mean distance between the batch's pseudo-class centroids (a batch with
       a single pseudo class contributes no ``L_o``; one without a shared pseudo label no ``L_s``).
    2. **classifier phase** (backbone E frozen): after the epoch's last training step, one pass
       over all of D_f with ``L_C = L_p``. Since E is frozen, the embeddings of D_f are
       computed once (no grad, eval mode) and the head is trained on them, in the same batch
       size, in an order keyed by dataset index and epoch. Every process runs the whole phase on
       the whole D_f with identical inputs, so the head stays identical across processes without
       communication and validation (at epoch end) sees the model after both phases.

    Manual optimisation with two optimisers: the backbone's (``lr``) and the head's (``head_lr``);
    a callable ``optimizer`` makes both, with its own arguments (``lr`` and ``head_lr`` are then not
    used), and a ``lr_scheduler`` schedules each, stepped after the classifier phase of every epoch.
    The frozen part is bit-identical after each phase (the other optimiser never steps it).

    Paper: *Countering Relearning with Perception Revising Unlearning* (PRU; Zhang et al., ACML 2024, PMLR 260).

    Deviations:
        - The paper's schedule (E then C every epoch), not the authors' code (which never updates C).
        - The classifier phase trains the head on cached embeddings (identical maths, since E is frozen
          and BatchNorm is in eval mode, one forward over D_f instead of one per step).
        - ``f`` is each sample's own label, so PRU also serves sub-class and random forgetting.
        - Defaults (Adam, lr 1e-4 for E, 1e-3 for C, 6 epochs, unit loss weights) were tuned on
          MNIST-5k/LeNet-5; the paper's per-dataset rates are in its supplement.

    Args:
        model: the trained classifier (deep-copied; the original is never modified).
        checkpoint: optional weights for ``model``.
        num_classes: size of the label space (default: the head's ``out_features``).
        head: dotted path of the final linear layer (default: found automatically).
        optimizer: optimiser of both phases (``adam``, ``adamw`` or ``sgd``, or a callable: see above).
        lr: learning rate of the feature extractor E.
        weight_decay: weight decay.
        momentum: SGD momentum.
        max_epochs: epochs (each = extractor phase + classifier phase).
        val_splits: splits whose accuracy is logged after every epoch.
        seed: seed of the classifier phase's order.
        head_lr: learning rate of the classifier C.
        weight_p: weight of ``L_p`` in ``L_E``.
        weight_s: weight of ``L_s``.
        weight_o: weight of ``L_o``.
        centroid_eps: the ε of ``L_o = 1/(d_o + ε)``.

    Raises:
        ValueError: for a non-positive ``head_lr`` or ``centroid_eps``, negative weights, or invalid base arguments.
        HeadNotFoundError: if the model has no usable linear head (e.g. weight tying): PRU must
            freeze head and backbone separately.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = PRU(LeNet5(), lr=1e-4, head_lr=1e-3, max_epochs=2)
    """

    data_need = "forget"
    paper = "PRU: Countering Relearning with Perception Revising Unlearning (Zhang et al., ACML 2024)."

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        max_epochs: int = 6,
        head_lr: float = 1e-3,
        weight_p: float = 1.0,
        weight_s: float = 1.0,
        weight_o: float = 1.0,
        centroid_eps: float = 1e-8,
        **kwargs: Any,
    ) -> None:
        check_number("head_lr", head_lr, "> 0", lambda v: v > 0)
        check_number("centroid_eps", centroid_eps, "> 0", lambda v: v > 0)
        for name, value in (("weight_p", weight_p), ("weight_s", weight_s), ("weight_o", weight_o)):
            check_number(name, value, ">= 0", lambda v: v >= 0)
        super().__init__(model, max_epochs=max_epochs, **kwargs)
        self.automatic_optimization = False
        # C is frozen in the extractor phase (set before DDP wraps the model, so DDP only syncs E).
        set_requires_grad(self.anatomy.head_parameters(), False)
        self._through_model_s = 0.0

    def on_head_located(self, guessed: nn.Module) -> None:
        set_requires_grad(guessed.parameters(), True)
        set_requires_grad(self.anatomy.head_parameters(), False)

    def configure_optimizers(self) -> Any:
        backbone = self.make_optimizer(self.anatomy.backbone_parameters())
        head = self.make_optimizer(self.anatomy.head_parameters(), lr=self.hparams.head_lr)
        return self.optimization([backbone, head])

    def compute_targets(self) -> None:
        out = self.split_outputs("forget")
        self.set_targets(out.indices, redistribute_probabilities(out.logits, out.labels))

    # ---------------------------------------------------------------- phase 1
    def extractor_loss(self, batch: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """``L_E`` of one batch and its logged parts."""
        hp = self.hparams
        logits, embeddings = self.forward_with_embeddings(batch[0])
        targets = self.lookup_targets(batch)
        parts = {"l_p": soft_kl(logits, targets)}
        l_s, l_o = cluster_losses(embeddings, targets.argmax(dim=1), hp.centroid_eps)
        loss = hp.weight_p * parts["l_p"]
        if l_s is not None:
            parts["l_s"], loss = l_s, loss + hp.weight_s * l_s
        if l_o is not None:
            parts["l_o"], loss = l_o, loss + hp.weight_o * l_o
        return loss, parts

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        extractor_opt, _ = self.optimizers()  # type: ignore[misc]
        loss, parts = self.extractor_loss(batch)
        self.check_finite_inputs(loss, batch)
        self.check_finite(loss)
        extractor_opt.zero_grad()
        self.manual_backward(loss)
        extractor_opt.step()
        self.log("train/loss", loss.detach(), prog_bar=True)
        for name, value in parts.items():
            self.log(f"train/{name}", value.detach())
        if batch_idx + 1 >= self.trainer.num_training_batches:
            self.classifier_phase()
            step_schedules(self.trainer)  # manual optimisation: the schedules are the method's to step
        return loss.detach()

    # ---------------------------------------------------------------- phase 2
    def classifier_phase(self) -> Tensor:
        """One pass of ``L_C = L_p`` over all of D_f with E frozen; returns the mean loss.

        When the model's output is its head's output, the head trains on D_f's embeddings,
        cached by one no-grad pass. When operations follow the head (e.g. a ReLU after the last
        linear layer), ``head(embeddings)`` is not the model's output: each chunk then runs
        through the whole model in eval mode with the backbone frozen (gradients reach the head
        through the operations after it): a forward pass of D_f per epoch instead of a matrix
        product, recorded in the outcome's notes.
        """
        t0 = time.perf_counter()
        dm = self.datamodule
        dataset = dm.split_dataset("forget")
        order = index_uniform(torch.as_tensor(dataset.indices), self.hparams.seed, stream=self.current_epoch).argsort()
        optimizer = self.optimizers()[1].optimizer  # type: ignore[index]
        size = dm.batch_size
        through_model = self.anatomy.head_is_output is False
        head_params = self.anatomy.head_parameters()
        backbone = [p for p in self.anatomy.backbone_parameters() if p.requires_grad]
        total = torch.zeros((), device=self.device)
        set_requires_grad(head_params, True)
        set_requires_grad(backbone, False)
        was_training = self.model.training
        try:
            with torch.enable_grad(), torch.autocast(self.device.type, enabled=False):
                for logits, indices in self._head_chunks(dataset, order, size, through_model):
                    loss = soft_kl(logits(), self.targets.lookup(indices))  # type: ignore[union-attr]
                    self.check_finite(loss)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.detach() * indices.numel()
        finally:
            set_requires_grad(head_params, False)
            set_requires_grad(backbone, True)
            self.model.train(was_training)
        if through_model:
            self._through_model_s += time.perf_counter() - t0
        mean = total / order.numel()
        self.log("train/l_c", mean)
        return mean

    def _head_chunks(self, dataset: Any, order: Tensor, size: int, through_model: bool) -> Iterator[tuple[Any, Tensor]]:
        """``(logits of the chunk, its dataset indices)`` for chunks of D_f in ``order`` (positions in the split)."""
        if not through_model:
            out = predict(self.model, DataLoader(dataset, batch_size=size), with_embeddings=True, head=self.anatomy.head_name)
            embeddings, head = out.embeddings.to(self.device), self.anatomy.head
            for chunk in order.to(self.device).split(size):
                yield (lambda c=chunk: head(embeddings[c])), out.indices[chunk.cpu()]
            return
        self.model.eval()  # as the cached pass: dropout off, BatchNorm statistics untouched
        for x, _, indices in DataLoader(Subset(dataset, order.tolist()), batch_size=size):
            yield (lambda x=x.to(self.device): self.model(x)), indices

    def on_fit_end(self) -> None:
        set_requires_grad(self.anatomy.head_parameters(), True)  # hand back a normal model
        if self._through_model_s:
            self.notes.append(
                f"{self.anatomy.describe_tail()}: the classifier phase ran through the whole model"
                f" ({self._through_model_s:.2f} s) instead of on cached embeddings"
            )
        super().on_fit_end()
