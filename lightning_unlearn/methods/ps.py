"""Prototype Surgery (PS): fine-tune the head on soft-labelled forget embeddings, cached once."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from lightning_unlearn.models.anatomy import set_requires_grad
from lightning_unlearn.models.classifier import split_batch
from lightning_unlearn.passes import embedding_pass, eval_mode, gather_rows
from lightning_unlearn.methods.checks import check_integer
from lightning_unlearn.methods.one_shot import OneShotHeadMethod
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.optim import build_scheduler, learning_rates, scale_learning_rates, scale_schedule
from lightning_unlearn.request import BACKOFF_FACTOR, BACKOFFS, GUARD_PATIENCE, ServeRequest, check_values

HeadPart = Literal["both", "weight", "bias"]


def soft_labels(logits: Tensor, labels: Tensor, top_k: int = 2) -> Tensor:
    """The soft labels of PS (paper Eq. 11-12).

    The logit of the label is removed, the ``top_k`` largest remaining logits are kept and
    normalised by their sum, ``p_c = z'_c / Σ z'_k``. When the kept logits are not all
    positive (that ratio would be undefined or negative), the softmax over the kept logits
    is used instead. All other classes get 0.

    Example:
        >>> soft_labels(torch.tensor([[5.0, 3.0, 1.0, -2.0]]), torch.tensor([0]))
        tensor([[0.0000, 0.7500, 0.2500, 0.0000]])
    """
    z = logits.float()
    masked = z.scatter(1, labels.long()[:, None], float("-inf"))
    values, classes = masked.topk(top_k, dim=1)
    positive = (values > 0).all(dim=1, keepdim=True)
    ratio = values / values.sum(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
    probs = torch.where(positive, ratio, values.softmax(dim=1))
    return torch.zeros_like(z).scatter(1, classes, probs)


def head_gradients(head: nn.Linear, embeddings: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of the mean cross-entropy ``CE(head(x), p)`` w.r.t. the head's weight and bias.

    For a linear head and probability targets they are ``gᵀx`` and ``Σ g`` with
    ``g = (softmax(head(x)) − p) / B``: computed directly, without autograd (3x faster on
    the tiny head matrices, identical up to rounding).
    """
    logits = F.linear(embeddings, head.weight, head.bias)
    residual = logits.softmax(dim=1).sub_(targets).div_(embeddings.shape[0])
    return residual.T @ embeddings, residual.sum(dim=0)


@contextlib.contextmanager
def _single_thread(device: torch.device) -> Iterator[None]:
    """One intra-op thread on the CPU: the head's matrices are tiny, and thread hand-offs would
    cost far more than the arithmetic (30x slower on a busy 2-core machine)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@register_method("PS")
class PS(OneShotHeadMethod):
    """Prototype Surgery: fine-tune only the head on the forget set relabelled with soft labels.

    For each forget sample the original model's logits give a soft label over the two most
    likely other classes (:func:`soft_labels`). The backbone is frozen, so the forget
    embeddings (and the original logits) are computed ONCE, in one no-grad eval-mode
    forward pass over D_f (BatchNorm in eval mode, autocast allowed); the head is then
    trained for ``epochs`` passes of mini-batches on the cached embeddings with
    cross-entropy against the soft labels (one softmax; its gradient w.r.t. the linear head
    is computed in closed form, :func:`head_gradients`). The whole request costs about one
    forward pass over D_f. No retain data is used.

    When operations follow the head (e.g. a ReLU or ``log_softmax`` after the last linear
    layer), the model's output is not ``head(embeddings)``: the forget inputs are then cached
    instead, and every step and check runs through the whole model in eval mode with the
    backbone frozen (gradients reach the head through the operations after it). That costs a
    forward pass per step and per check instead of a matrix product; the outcome's notes say so.

    Fitting with a Trainer performs everything in ``prepare_unlearning`` (no Trainer
    steps); :meth:`surgery` serves a request without a Trainer. Under DDP every process
    embeds its share of D_f; the cache is gathered and ordered by dataset index so the head
    training (seeded shuffling) is identical on every process.

    Paper: Liu et al., "Prototype Surgery: Tailoring Neural Prototypes via Soft Labels for
    Efficient Machine Unlearning", CCS 2025, Sec. 5 (Eq. 11-13).

    Deviations (where the paper leaves room, and why):
        * When the kept logits are not all positive, softmax over them replaces the ratio.
        * Weight and bias are both trained by default (``train`` restricts it), as the paper
          fine-tunes the prototypes; the authors' code trains ONLY the last layer's bias
          (``train="bias"`` restricts training the same way).
        * One softmax (cross-entropy with probability targets), not softmax of a softmax.
        * Adam, lr 1e-3, 8 epochs of mini-batches of 128 by default: tuned on the bundled
          MNIST-5k/LeNet-5 benchmark over class-wise, 10%-of-one-class and random-10%
          forgetting, since the paper gives no values for PS. The number of steps per epoch
          grows with |D_f|, so a whole class is pushed further than a few samples.

    Args:
        model: the trained classifier.
        optimizer: optimiser of the head (a shortcut name with ``lr``, or a callable).
        lr: learning rate of the head.
        lr_scheduler: schedule of the head's learning rate, stepped after every pass over the forget set
            (a ReduceLROnPlateau, which needs a monitored value, cannot apply).
        max_epochs: Trainer epochs (the work is done before the first one; default 0).
        epochs: passes of the head training over the cached forget embeddings.
        top_k: number of other classes kept in each soft label (paper: 2).
        train: which head parameters are trained: ``"both"``, ``"weight"`` or ``"bias"``.
        head_batch_size: mini-batch size of the head training (smaller = more steps per epoch,
            so a larger forget set moves the prototypes more).
        batch_size: batch size of the embedding pass (default: the data module's).
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Raises:
        ValueError: for ``top_k`` < 1, an unknown ``train`` or non-positive batch sizes; at
            unlearning time for ``top_k`` >= the number of classes.

    Example:
        >>> from lightning_unlearn.models import LeNet5
        >>> method = PS(LeNet5(), lr=1e-3, epochs=5, train="weight")
    """

    data_need = "forget"
    iterative = True  # its head iterates on cached embeddings, towards the request's target
    paper = "Liu et al., Prototype Surgery (CCS 2025), PS: soft-label fine-tuning of the prototypes."
    limitation = (
        "it trains the head on D_f alone, towards the two closest other classes, with nothing holding the retained"
        " classes: moving their prototypes costs them more than the guard allows before a whole class is forgotten"
        " on most classes (measured: LeNet-5 on MNIST-5k, 10 of 30 class-wise requests over 3 seeds served, every"
        " other one ended by the guard, also with lr 3e-4 or 1e-2, head batches of 32, top_k=3, or the weight or"
        " bias alone); for a whole class use a method with a retain term (NegGradPlus, SalUn, UGradSLPlus)."
    )

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        lr: float = 1e-3,
        max_epochs: int = 0,
        epochs: int = 8,
        top_k: int = 2,
        train: HeadPart = "both",
        head_batch_size: int = 128,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, lr=lr, max_epochs=max_epochs, **kwargs)
        self.automatic_optimization = False
        check_integer("epochs", epochs, 1)
        check_integer("top_k", top_k, 1)
        if top_k >= self.num_classes:
            raise ValueError(f"`top_k` must be < the number of classes ({self.num_classes}), got {top_k}.")
        if train not in ("both", "weight", "bias"):
            raise ValueError(f"`train` must be one of ['both', 'weight', 'bias'], got {train!r}.")
        if train != "weight" and self.anatomy.head.bias is None:
            raise ValueError(f"`train`={train!r} needs a head with a bias; the head {self.anatomy.head_name!r} has none.")
        check_integer("head_batch_size", head_batch_size, 1)
        check_integer("batch_size", batch_size, 1, allow_none=True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        head = self.anatomy.head
        part = self.hparams.train
        return [p for name, p in (("weight", head.weight), ("bias", head.bias)) if p is not None and part in (name, "both")]

    def cache_forget_set(self, forget_loader: DataLoader) -> tuple[Tensor, Tensor]:
        """``(embeddings, soft_labels)`` of D_f from one no-grad forward pass, ordered by dataset index."""
        trainer = self._fit_trainer
        chunks = list(embedding_pass(self.anatomy, forget_loader, trainer))
        logits = gather_rows(torch.cat([c[0].float() for c in chunks]), trainer)
        embeddings = gather_rows(torch.cat([c[1].float() for c in chunks]), trainer)
        labels = gather_rows(torch.cat([c[2] for c in chunks]), trainer)
        indices = gather_rows(torch.cat([c[3] for c in chunks]), trainer)
        order = indices.argsort()
        return embeddings[order], soft_labels(logits[order], labels[order], self.hparams.top_k)

    def surgery(self, forget_loader: DataLoader) -> None:
        """Serve the deletion request of ``forget_loader`` (batches ``(x, y, index)``)."""
        self._timed(self._surgery, forget_loader)

    def _restore_head(self, kept: list[Tensor]) -> None:
        with torch.no_grad():
            for param, value in zip(self.trainable_parameters(), kept):
                param.copy_(value)

    def check_embeddings(self, request: ServeRequest) -> dict[str, tuple[Tensor, Tensor]]:
        """``{split: (embeddings, labels)}`` of the request's check sets: one no-grad pass each.

        The backbone is frozen, so every later check of the head is a matrix product on these.
        """
        trainer = self._fit_trainer
        out = {}
        for split, loader in request.loaders.items():
            chunks = list(embedding_pass(self.anatomy, loader, trainer))
            emb = gather_rows(torch.cat([c[1].float() for c in chunks]), trainer)
            out[split] = (emb, gather_rows(torch.cat([c[2] for c in chunks]), trainer))
        return out

    def _through_model(self) -> bool:
        """Whether operations follow the head, so steps and checks run through the whole model."""
        return self.anatomy.head_is_output is False

    def _inputs_of(self, loader: DataLoader) -> tuple[Tensor, Tensor, Tensor]:
        """``(inputs, labels, indices)`` of every sample of ``loader`` on this device, ordered by dataset index
        (the same on every process: each reads the whole loader)."""
        xs, ys, ids = [], [], []
        for position, batch in enumerate(loader):
            x, y = split_batch(batch)
            xs.append(torch.as_tensor(x))
            ys.append(torch.as_tensor(y))
            ids.append(torch.as_tensor(batch[2]) if len(batch) > 2 else torch.arange(len(y)) + position * len(y))
        order = torch.cat(ids).argsort()
        device = self.anatomy.head.weight.device
        return torch.cat(xs)[order].to(device), torch.cat(ys)[order].to(device), torch.cat(ids)[order]

    def _model_logits(self, x: Tensor) -> Tensor:
        """The whole model's output in eval mode, in chunks (the path where operations follow the head)."""
        with eval_mode(self.model):
            return torch.cat([self.model(chunk) for chunk in x.split(self.hparams.head_batch_size)])

    def _model_gradients(self, x: Tensor, targets: Tensor) -> None:
        """Set the trainable head parameters' gradients of the mean cross-entropy ``CE(model(x), p)``."""
        params = self.trainable_parameters()
        with torch.enable_grad(), eval_mode(self.model):
            frozen = [p for p in self.model.parameters() if p.requires_grad and all(p is not q for q in params)]
            set_requires_grad(frozen, False)
            try:
                loss = -(targets * self.model(x).float().log_softmax(dim=1)).sum(dim=1).mean()
                grads = torch.autograd.grad(loss, params)
            finally:
                set_requires_grad(frozen, True)
        for param, grad in zip(params, grads):
            param.grad = grad

    def _surgery(self, forget_loader: DataLoader) -> None:
        hp = self.hparams
        head = self.anatomy.head
        optimizer = self.make_optimizer(self.trainable_parameters())
        schedule = self._optimizer_arguments["lr_scheduler"]
        scheduler = None if schedule is None else build_scheduler(schedule, optimizer)
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise ValueError("`lr_scheduler`: PS steps its schedule after every pass over the forget set, with no monitored"
                             " value: ReduceLROnPlateau cannot apply; give another schedule (e.g. StepLR).")
        through = self._through_model()
        started = time.perf_counter()
        if through:
            inputs, labels, _ = self._inputs_of(forget_loader)
            with torch.no_grad():
                targets = soft_labels(self._model_logits(inputs), labels, hp.top_k).to(head.weight.dtype)
            n = inputs.shape[0]
        else:
            embeddings, targets = (t.to(head.weight.dtype) for t in self.cache_forget_set(forget_loader))
            n = embeddings.shape[0]
        generator = torch.Generator().manual_seed(hp.seed)
        size = hp.head_batch_size
        per_epoch = -(-n // size)
        request = self._request() if self._fit_trainer is not None else None
        serving = request is not None and request.checking and request.target is not None
        if not serving:
            checks = {}
        elif through:
            checks = {split: self._inputs_of(loader)[:2] for split, loader in request.loaders.items()}  # type: ignore[union-attr]
        else:
            checks = self.check_embeddings(request)  # type: ignore[arg-type]

        def judge() -> tuple[float, bool, bool]:
            outputs = {}
            for split, (data, labels) in checks.items():
                scores = self._model_logits(data) if through else F.linear(data.to(head.weight.dtype), head.weight, head.bias)
                outputs[split] = (scores.float().cpu(), labels.cpu().long())
            values = check_values(outputs, request.forget_weights, request.reference)  # type: ignore[union-attr]
            return request.judge(values)  # type: ignore[union-attr]

        def set_gradients(batch: Tensor) -> None:
            if through:
                self._model_gradients(inputs[batch], targets[batch])
                return
            head.weight.grad, grad_bias = head_gradients(head, embeddings[batch], targets[batch])
            if head.bias is not None:
                head.bias.grad = grad_bias

        # Without a request: ``epochs`` passes. Serving one: steps until the target's aim is crossed,
        # within the request's step budget, judged after every step (a linear layer on cached
        # embeddings: microseconds), keeping the best head that respected the guard. Where the
        # guard would end the run, the head goes back to its best state with its learning rate
        # halved, as the request does for every other method (BACKOFFS times).
        budget = hp.epochs * per_epoch
        if serving:
            budget = request.max_steps or max(budget, request.min_steps)  # type: ignore[union-attr]
            best = (judge()[0], [p.detach().clone() for p in self.trainable_parameters()], copy.deepcopy(optimizer.state_dict()))
        steps, violations, backoffs, stopped_by = 0, 0, 0, "budget"
        patience = GUARD_PATIENCE * per_epoch  # as many steps as GUARD_PATIENCE checks once per pass
        done = serving and request.judge(request.before)[2]  # type: ignore[union-attr]
        device = head.weight.device
        with torch.no_grad(), (contextlib.nullcontext() if through else _single_thread(device)):
            while steps < budget and not done:
                order = torch.randperm(n, generator=generator).to(device)
                for start in range(0, n, size):
                    batch = order[start : start + size]
                    set_gradients(batch)
                    optimizer.step()
                    steps += 1
                    if serving:
                        score, respected, crossed = judge()
                        if respected and score < best[0] - 1e-12:
                            best = (score, [p.detach().clone() for p in self.trainable_parameters()],
                                    copy.deepcopy(optimizer.state_dict()))
                        violations = 0 if respected else violations + 1
                        if respected and crossed:
                            stopped_by, done = "target", True
                        elif violations >= patience and backoffs < BACKOFFS:
                            backoffs, violations = backoffs + 1, 0
                            self._restore_head(best[1])
                            rates = learning_rates(optimizer)  # where the schedule has got to, not the saved state's
                            optimizer.load_state_dict(copy.deepcopy(best[2]))
                            scale_learning_rates(optimizer, BACKOFF_FACTOR, rates)
                            if scheduler is not None:
                                scale_schedule(scheduler, BACKOFF_FACTOR)
                        elif violations >= patience:
                            stopped_by, done = "guard", True
                    if steps >= budget or done:
                        break
                self.check_finite(head.weight.sum())
                if scheduler is not None:
                    scheduler.step()
        if serving:
            score, respected, _ = judge()
            if not respected or score > best[0] + 1e-12:
                self._restore_head(best[1])
            request.record_inner_run(steps, stopped_by)  # type: ignore[union-attr]
        head.weight.grad = None
        if head.bias is not None:
            head.bias.grad = None
        if through:
            self.notes.append(
                f"{self.anatomy.describe_tail()}: the head trained through the whole model"
                f" ({time.perf_counter() - started:.2f} s) instead of on cached embeddings"
            )
