"""Naive Prototype Surgery: closed-form unlearning of the head from W0 and the Gram matrix."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_unlearn.callbacks.prototype_recorder import PrototypeRecorder  # the type of the `recording` argument
from lightning_unlearn.prototypes import PrototypeRecording, gram_pass, head_matrix
from lightning_unlearn.methods.one_shot import OneShotHeadMethod
from lightning_unlearn.methods.registry import register_method
from lightning_unlearn.passes import gather_rows


def naive_ps_update(weight: Tensor, weight0: Tensor, gram: Tensor, forget_gram: Tensor, ridge: float = 1e-6) -> Tensor:
    """``W_un = W + (W0 − W)(G + λI)⁻¹ G_f`` with ``λ = ridge · trace(G) / dim`` (float64).

    Equal to the paper's ``W0 − Ω_r X_r`` with the minimum-norm ``Ω = (W0 − W) X⁺``
    (exactly so for ``ridge=0`` and full-column-rank X), using only the Gram matrices.
    """
    gram, forget_gram = gram.to(torch.float64), forget_gram.to(torch.float64)
    weight, weight0 = weight.to(torch.float64), weight0.to(torch.float64)
    dim = gram.shape[0]
    lam = ridge * torch.trace(gram) / dim
    system = gram + lam * torch.eye(dim, dtype=gram.dtype, device=gram.device)
    return weight + (weight0 - weight) @ torch.linalg.solve(system, forget_gram)


RIDGE_LADDER: tuple[float, ...] = (1e-4, 1e-2, 1e-1, 0.3, 1.0, 3.0, 10.0)
"""Relative ridges tried in turn, after ``ridge``, while a served request is not met within the guard.

With the recorded embeddings nearly collinear (dead or redundant units), a tiny ridge amplifies
the directions the final embeddings share least with the ones the head was trained on: on an
MLP on sklearn digits (class 7, seeds 0-1, Adam or SGD) ridge 1e-6 cost the other classes 3 to
74 points, ridge 1 at most 1.5, with the class forgotten either way."""

GRAM_TOLERANCE = 1e-6
"""Relative tolerance of the check that the forget samples are part of the recorded Gram matrix."""


def check_forget_gram(gram: Tensor, forget_gram: Tensor, tolerance: float = GRAM_TOLERANCE) -> None:
    """Raise unless ``G − G_f`` is positive semi-definite (up to ``tolerance`` times G's largest eigenvalue).

    ``G_f`` sums the forget samples' embeddings; when these samples were part of the recorded
    training set, ``G − G_f`` is the Gram matrix of the samples that remain, hence positive
    semi-definite. A clearly negative eigenvalue means the embeddings are not those that were
    recorded: other preprocessing of the inputs, or another model.

    Raises:
        ValueError: naming the smallest eigenvalue and the likely causes.
    """
    remaining = torch.linalg.eigvalsh(gram.to(torch.float64) - forget_gram.to(torch.float64))
    scale = float(torch.linalg.eigvalsh(gram.to(torch.float64))[-1].clamp_min(1.0))
    if float(remaining[0]) < -tolerance * scale:
        raise ValueError(
            f"NaivePS: the forget set's embeddings are not part of the recorded training embeddings (the smallest"
            f" eigenvalue of G - X_f^T X_f is {float(remaining[0]):.3g}, largest of G {scale:.3g}; it cannot be negative"
            " for recorded samples). Likely cause: the data is preprocessed differently than during the recorded"
            " training (e.g. another normalisation or transform), or the model is not the recorded one. The head is"
            " unchanged."
        )


def resolve_recording(recording: Any) -> PrototypeRecording | None:
    """A :class:`PrototypeRecording` from a recording, a recorder, a file path or ``None``."""
    if recording is None or isinstance(recording, PrototypeRecording):
        return recording
    if isinstance(recording, PrototypeRecorder):
        return recording.recording
    if isinstance(recording, (str, os.PathLike)):
        return PrototypeRecording.load(recording)
    raise TypeError(
        "`recording` must be a PrototypeRecorder, a PrototypeRecording, the path of an exported recording or of a"
        f" checkpoint, got {type(recording).__name__}."
    )


@register_method("NaivePS")
class NaivePS(OneShotHeadMethod):
    """Naive Prototype Surgery: remove the forget samples' contribution to the head in closed form.

    The paper writes the trained head as ``W = W0 − Ω X`` (X: N×E training embeddings),
    solves for Ω, drops the forget columns/rows and sets ``W_un = W0 − Ω_r X_r``. With the
    minimum-norm ``Ω = (W0 − W) X⁺`` this equals ``W + (W0 − W)(XᵀX + λI)⁻¹ X_fᵀX_f``, which
    needs only the Gram matrix ``G = XᵀX`` recorded by
    :class:`~lightning_unlearn.callbacks.PrototypeRecorder` and the forget embeddings X_f
    (one no-grad forward pass over D_f). Only the head changes; the backbone is untouched.

    The recording is updated IN PLACE after each request (``G ← G − X_fᵀX_f``, the head it
    describes, the removed dataset indices), so a second request on the unlearned model
    works with the same recording, and a request that repeats a removed sample is refused.
    Fitting with a Trainer performs the surgery in ``prepare_unlearning`` and runs no
    training step (``max_epochs`` is 0 by default); :meth:`surgery` serves a request
    without a Trainer.

    Paper: Liu et al., "Prototype Surgery: Tailoring Neural Prototypes via Soft Labels for
    Efficient Machine Unlearning", CCS 2025, Sec. 4.3 (Eq. 9-10).

    Deviations (where the paper leaves room, and why):
        * Gram-matrix form (O(E²) memory) instead of storing the N×E embedding matrix.
        * A small relative ridge ``λ = ridge·trace(G)/(E+1)`` (``ridge=0`` gives the exact
          pseudo-inverse solution when X has full column rank); solved in float64. Serving a
          request (the default), the ridges of :data:`RIDGE_LADDER` above ``ridge`` are tried in
          turn until the target is reached within the utility guard (each a closed form and one
          check; the outcome's notes say which was used): the head is trained on embeddings that
          moved during training, and a tiny ridge amplifies that mismatch along the directions
          the final embeddings barely span.
        * The bias is unlearned too (constant-1 embedding column); the authors' code leaves it.
        * Successive requests are served from the updated G (the paper describes one request).

    Args:
        model: the trained classifier.
        recording: a :class:`PrototypeRecorder`, its ``recording``, or the path of an exported
            recording or of a checkpoint of the recorded fit.
        ridge: relative ridge λ / (trace(G)/(E+1)), ``>= 0``.
        batch_size: batch size of the forget-embedding pass (default: the data module's).
        max_epochs: Trainer epochs (the surgery needs none).
        **kwargs: the remaining arguments of :class:`~lightning_unlearn.methods.base.UnlearningMethod`.

    Raises:
        ValueError: when ``recording`` is missing or incomplete (names ``PrototypeRecorder``),
            when its embedding size/number of classes differs from the model's head, when the
            head differs from the one the recording describes, for a negative ``ridge``, and
            (at unlearning time) for a request with an already removed or duplicated sample.
        TypeError: for a ``recording`` of another type.

    Example:
        >>> from lightning_unlearn import ClassForget, UnlearningDataModule, train_classifier, unlearn
        >>> from lightning_unlearn.callbacks import PrototypeRecorder
        >>> dm = UnlearningDataModule("digits", forget=ClassForget(0))
        >>> recorder = PrototypeRecorder()
        >>> original = train_classifier(dm, max_epochs=1, callbacks=[recorder])
        >>> unlearned = unlearn(original, dm, method="NaivePS", recording=recorder)
    """

    data_need = "forget"
    paper = "Liu et al., Prototype Surgery (CCS 2025), Naive PS: closed-form prototype update."

    def __init__(
        self,
        model: nn.Module | None = None,
        *,
        max_epochs: int = 0,
        recording: str | PrototypeRecording | PrototypeRecorder | None = None,
        ridge: float = 1e-6,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, max_epochs=max_epochs, **kwargs)
        self.save_hyperparameters(ignore=["model", "recording"])
        self.automatic_optimization = False
        if not isinstance(ridge, (int, float)) or isinstance(ridge, bool) or not 0 <= ridge < math.inf:
            raise ValueError(f"`ridge` must be a finite number >= 0, got {ridge!r}.")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1 or None, got {batch_size}.")
        if isinstance(recording, PrototypeRecorder) and recording._recording is None:
            recording = None
        rec = resolve_recording(recording)
        if rec is None:
            raise ValueError(
                "NaivePS needs W0 (the head at initialisation) and the Gram matrix of the training embeddings, which"
                " only the original training can record: attach `PrototypeRecorder()` to the Trainer.fit that trains"
                " the model, then pass `recording=recorder` (or `recorder.export(path)` / the checkpoint path)."
            )
        self._check_recording(rec)
        self.recording = rec

    def _check_recording(self, rec: PrototypeRecording) -> None:
        head = self.anatomy.head
        if rec.embedding_dim != head.in_features:
            raise ValueError(
                f"`recording` has embedding size {rec.embedding_dim}, but the model's head {self.anatomy.head_name!r}"
                f" has in_features={head.in_features}: the recording belongs to another model."
            )
        if rec.num_classes != head.out_features:
            raise ValueError(
                f"`recording` has {rec.num_classes} classes, but the model's head has out_features={head.out_features}."
            )
        if not torch.allclose(head_matrix(head), rec.weight, rtol=1e-5, atol=1e-6):
            raise ValueError(
                "`recording` describes another head than the model's: pass the model the recording was made for (or,"
                " after a Naive PS request, the unlearned model; the recording is updated in place)."
            )

    def surgery(self, forget_loader: DataLoader) -> None:
        """Serve the deletion request of ``forget_loader`` (batches ``(x, y, index)``) in closed form."""
        self._timed(self._surgery, forget_loader)

    def _surgery(self, forget_loader: DataLoader) -> None:
        trainer = self._fit_trainer
        rec = self.recording
        self._check_recording(rec)
        forget_gram, indices = gram_pass(self.anatomy, forget_loader, trainer)
        indices = gather_rows(indices, trainer).cpu()
        self._check_request(indices, rec)
        if not torch.isfinite(forget_gram).all():
            raise ValueError(
                "NaivePS: the forget set's embeddings are not finite (NaN or inf), so the head cannot be updated; the"
                " head is unchanged. Likely cause: NaN/inf values in the forget set's inputs."
            )
        if not rec.has_bias:
            forget_gram[-1, :] = 0
            forget_gram[:, -1] = 0
        check_forget_gram(rec.gram, forget_gram)
        request = self._request() if trainer is not None else None
        serving = request is not None and request.checking and request.target is not None
        ridges = [self.hparams.ridge]
        if serving:  # larger ridges, tried in turn while the request is not served within the guard
            ridges += [r for r in RIDGE_LADDER if r > self.hparams.ridge]
        best: tuple[float, float, Tensor] | None = None  # (distance to the target, ridge, head) within the guard
        served = False
        for ridge in ridges:
            new_weight = naive_ps_update(rec.weight, rec.weight0, rec.gram, forget_gram, ridge)
            if not torch.isfinite(new_weight).all():
                if ridge != ridges[-1] or best is not None:
                    continue
                raise ValueError(
                    "NaivePS: the closed-form update is not finite (the recorded Gram matrix is singular or not finite);"
                    f" the head is unchanged. Use a larger `ridge` (got {self.hparams.ridge!r})."
                )
            self._set_head(new_weight, rec.has_bias)
            if not serving:
                break
            score, respected, _ = request.judge(request._measure(trainer, self))  # type: ignore[union-attr]
            served = respected and request.target.reached_at(score)  # type: ignore[union-attr]
            if served:
                break
            if respected and (best is None or score < best[0]):
                best = (score, ridge, new_weight)
            served = False
        if serving and not served:  # the closest to the target within the guard; else the paper's ridge (reported)
            ridge, new_weight = (best[1], best[2]) if best is not None else (ridges[0], naive_ps_update(
                rec.weight, rec.weight0, rec.gram, forget_gram, ridges[0]))
            if not torch.isfinite(new_weight).all():
                raise ValueError(
                    "NaivePS: the closed-form update is not finite (the recorded Gram matrix is singular or not finite);"
                    f" the head is unchanged. Use a larger `ridge` (got {self.hparams.ridge!r})."
                )
            self._set_head(new_weight, rec.has_bias)
        if serving and ridge != self.hparams.ridge:
            self.notes.append(
                f"the closed form used ridge {ridge:g}, the first of {ridges} that served the request within the guard"
                if served else f"no ridge of {ridges} served the request within the guard; ridge {ridge:g} came closest"
                " to the target within it"
            )
        head = self.anatomy.head
        rec.weight = head_matrix(head)
        rec.gram = rec.gram - forget_gram
        rec.removed = torch.cat([rec.removed, indices]).sort().values

    def _set_head(self, weight: Tensor, has_bias: bool) -> None:
        """Write ``[W | b]`` into the head (the bias column is ignored for a head without bias)."""
        head = self.anatomy.head
        with torch.no_grad():
            head.weight.copy_(weight[:, :-1].to(head.weight))
            if head.bias is not None and has_bias:
                head.bias.copy_(weight[:, -1].to(head.bias))

    @staticmethod
    def _check_request(indices: Tensor, rec: PrototypeRecording) -> None:
        unique = torch.unique(indices)
        if unique.numel() != indices.numel():
            raise ValueError("The deletion request lists some dataset indices more than once.")
        again = unique[torch.isin(unique, rec.removed)]
        if again.numel():
            raise ValueError(
                f"The deletion request contains {again.numel()} sample(s) already removed by an earlier Naive PS request"
                f" (dataset indices {again[:10].tolist()}); remove them from the forget set."
            )
        if rec.recorded is not None:
            unrecorded = unique[~torch.isin(unique, rec.recorded)]
            if unrecorded.numel():
                raise ValueError(
                    f"The deletion request contains {unrecorded.numel()} sample(s) the recording never saw (dataset indices"
                    f" {unrecorded[:10].tolist()}{', ...' if unrecorded.numel() > 10 else ''}): Naive PS can only remove"
                    " samples of the recorded training set. The head is unchanged."
                )
        if indices.numel() >= rec.num_samples:
            raise ValueError(
                f"The deletion request has {indices.numel()} samples but only {rec.num_samples} remain in the recorded"
                " training set; Naive PS cannot remove all of them."
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["prototype_recording"] = self.recording.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if "prototype_recording" in checkpoint:
            self.recording = PrototypeRecording.from_dict(checkpoint["prototype_recording"])
