"""Naive PS and PS (Prototype Surgery, paper 000): exactness, quality on MNIST-5k, head-only, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from lightning_unlearn import ClassForget, Classifier, IndexForget, UnlearningDataModule, make_trainer, split_accuracies
from lightning_unlearn import train_classifier, unlearn
from lightning_unlearn.callbacks import PrototypeRecorder, PrototypeRecording
from lightning_unlearn.methods import PS, NaivePS
from lightning_unlearn.methods.ps import head_gradients, soft_labels
from lightning_unlearn.models import Anatomy
from quality import SEEDS, mean, per_seed, quality

E, C, N = 6, 3, 120


def linear_dm(forget: list[int]) -> UnlearningDataModule:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N, E, generator=gen)
    y = (x[:, :C] + 0.3 * torch.randn(N, C, generator=gen)).argmax(1)
    dm = UnlearningDataModule.from_datasets(TensorDataset(x, y), TensorDataset(x[:30], y[:30]), IndexForget(forget),
                                            num_classes=C, batch_size=16, ref_fraction=0.0)  # every sample trains
    dm.setup()
    return dm


def explicit_naive_ps(weight0: torch.Tensor, weight: torch.Tensor, x: torch.Tensor, forget: list[int]) -> torch.Tensor:
    """The paper's construction: Ω = (W0 − W) X⁺, drop the forget columns/rows, W_un = W0 − Ω_r X_r."""
    omega = (weight0 - weight) @ torch.linalg.pinv(x)
    keep = torch.ones(x.shape[0], dtype=torch.bool)
    keep[forget] = False
    return weight0 - omega[:, keep] @ x[keep]


def head_of(model: nn.Module) -> torch.Tensor:
    head = Anatomy(model).head
    return torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).double()


def test_gram_form_equals_pseudo_inverse_construction_and_serves_successive_requests():
    dm = linear_dm([1, 5, 7, 30])
    recorder = PrototypeRecorder()
    torch.manual_seed(0)
    clf = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(E, C)), num_classes=C, optimizer="sgd", lr=0.1)
    make_trainer(3, [recorder], limit_val_batches=0).fit(clf, datamodule=dm)
    rec = recorder.recording
    x = dm.data.train.tensors[0].double()
    x = torch.cat([x, torch.ones(N, 1, dtype=torch.float64)], 1)  # the bias is a prototype column
    w0, w = rec.weight0.clone(), rec.weight.clone()

    # The surgery alone (no request's target or guard): exact weights.
    first = unlearn(clf, dm, method="NaivePS", recording=rec, ridge=0.0, target=None, guard=None)
    torch.testing.assert_close(head_of(first), explicit_naive_ps(w0, w, x, [1, 5, 7, 30]), rtol=0, atol=1e-6)
    assert rec.removed.tolist() == [1, 5, 7, 30] and rec.num_samples == N - 4
    keep = [i for i in range(N) if i not in (1, 5, 7, 30)]
    torch.testing.assert_close(rec.gram, x[keep].T @ x[keep])

    # A second request on the unlearned model: the same construction on the remaining data.
    second = unlearn(first, linear_dm([2, 9]), method="NaivePS", recording=rec, ridge=0.0, target=None, guard=None)
    expected = explicit_naive_ps(w0, head_of(first), x[keep], [keep.index(2), keep.index(9)])
    torch.testing.assert_close(head_of(second), expected, rtol=0, atol=1e-6)
    # The default ridge changes the result only slightly.
    ridged = NaivePS(clf, recording=_fresh(w0, w, x), ridge=1e-6)
    ridged.surgery(linear_dm([1, 5, 7, 30]).dataloader("forget"))
    torch.testing.assert_close(head_of(ridged.model), head_of(first), rtol=0, atol=1e-4)

    with pytest.raises(ValueError, match="already removed by an earlier Naive PS request"):
        unlearn(second, linear_dm([3, 5]), method="NaivePS", recording=rec, target=None, guard=None)
    with pytest.raises(ValueError, match="describes another head"):
        NaivePS(clf, recording=rec)  # the recording now describes `second`, not the original


def _fresh(w0: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> PrototypeRecording:
    return PrototypeRecording(w0, w, x.T @ x)


@pytest.fixture(scope="module")
def digits():
    dm = UnlearningDataModule("digits", forget=ClassForget(2), batch_size=32)
    recorder = PrototypeRecorder()
    model = train_classifier(dm, "lenet5", max_epochs=3, seed=0, callbacks=[recorder])
    return dm, model, recorder


def test_only_the_head_changes_and_direct_call_matches_trainer(digits):
    dm, model, recorder = digits
    backbone = {n: p.detach().clone() for n, p in Anatomy(model).backbone_named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    no_request = {"target": None, "guard": None}  # the surgery alone: the guard must not restore the original head
    for name, options in (("NaivePS", {"recording": copy.deepcopy(recorder.recording), **no_request}), ("PS", no_request)):
        method = NaivePS if name == "NaivePS" else PS
        fitted = method(model, **copy.deepcopy(options))
        trainer = make_trainer(1, limit_val_batches=0, min_epochs=1)  # even a forced epoch must not step
        trainer.fit(fitted, datamodule=dm)
        assert trainer.global_step == 0 and fitted.runtime_s > 0
        anatomy = Anatomy(fitted.model)
        for n, p in anatomy.backbone_named_parameters():
            assert torch.equal(p, backbone[n]), f"{name} changed backbone parameter {n}"
        assert all(torch.equal(b, buffers[n]) for n, b in fitted.model.named_buffers())
        assert not torch.equal(anatomy.head.weight, Anatomy(model).head.weight)
        direct = method(model, **copy.deepcopy(options))
        direct.surgery(dm.dataloader("forget"))
        assert torch.equal(direct.anatomy.head.weight, anatomy.head.weight) and direct.runtime_s > 0
        assert split_accuracies(fitted.model, dm, ("forget",))["forget"] < 0.5
    for part, frozen in (("weight", "bias"), ("bias", "weight")):
        method = PS(model, train=part)
        method.surgery(dm.dataloader("forget"))
        assert torch.equal(getattr(method.anatomy.head, frozen), getattr(Anatomy(model).head, frozen))
        assert not torch.equal(getattr(method.anatomy.head, part), getattr(Anatomy(model).head, part))


def test_soft_labels():
    logits = torch.tensor([[5.0, 3.0, 1.0, -2.0], [9.0, -1.0, -3.0, -4.0], [0.5, 2.0, 8.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    expected = torch.tensor([
        [0.0, 0.75, 0.25, 0.0],  # z'_c / Σ z'_k over the top two other classes
        [0.0, *torch.tensor([-1.0, -3.0]).softmax(0).tolist(), 0.0],  # kept logits not positive: softmax
        [0.0, 0.0, 8.0 / 9.0, 1.0 / 9.0],  # the label's logit never counts, even if large
    ])
    torch.testing.assert_close(soft_labels(logits, labels), expected)
    assert soft_labels(logits, labels, top_k=3).count_nonzero(dim=1).tolist() == [3, 3, 3]

    # The closed-form head gradients PS uses equal autograd's for CE against soft labels.
    head, x, p = nn.Linear(5, 4), torch.randn(7, 5), soft_labels(torch.randn(7, 4), torch.randint(0, 4, (7,)))
    nn.functional.cross_entropy(head(x), p).backward()
    grad_w, grad_b = head_gradients(head, x, p)
    torch.testing.assert_close(grad_w, head.weight.grad)
    torch.testing.assert_close(grad_b, head.bias.grad)


def test_bad_input(digits):
    dm, model, recorder = digits
    with pytest.raises(ValueError, match="attach `PrototypeRecorder\\(\\)`"):
        NaivePS(model)
    with pytest.raises(ValueError, match="attach `PrototypeRecorder\\(\\)`"):
        NaivePS(model, recording=PrototypeRecorder())  # never attached to a fit
    with pytest.raises(ValueError, match="embedding size 84, but the model's head"):
        NaivePS(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), recording=recorder)
    with pytest.raises(TypeError, match="`recording` must be a PrototypeRecorder"):
        NaivePS(model, recording=3)
    with pytest.raises(ValueError, match="`ridge` must be a finite number >= 0, got -1.0"):
        NaivePS(model, recording=recorder, ridge=-1.0)
    with pytest.raises(ValueError, match="`ridge` must be a finite number >= 0, got nan"):
        NaivePS(model, recording=recorder, ridge=float("nan"))
    with pytest.raises(ValueError, match="`top_k` must be < the number of classes"):
        PS(model, top_k=10)
    with pytest.raises(ValueError, match="`train` must be one of"):
        PS(model, train="head")
    with pytest.raises(ValueError, match="`epochs` must be an integer >= 1"):
        PS(model, epochs=0)


def test_ps_trains_the_head_only_on_a_subclass_request(mnist_dm, original_lenet):
    backbone = {n: p.detach().clone() for n, p in Anatomy(original_lenet).backbone_named_parameters()}
    # No request: the guard would return the original weights, which keep the backbone trivially.
    unlearned = unlearn(original_lenet, mnist_dm("subclass"), method="PS", target=None, guard=None)
    for n, p in Anatomy(unlearned).backbone_named_parameters():
        assert torch.equal(p, backbone[n]), n


# |accuracy(PS) - accuracy(Retrain)| per split, mean over seeds. Measured per seed (spread = max - min):
# forget 0.029, 0.029, 0.088 (spread 0.06); retain 0.023-0.027 (0.004); test 0.016-0.025 (0.009).
PS_TO_RETRAIN = {"forget": 0.12, "retain": 0.05, "test": 0.05}


@quality
def test_ps_subclass_close_to_retrain(quality_run):
    """PS on 10% of one class lands near the retrained model on every split.

    The ordering "PS closer to Retrain than FineTune and GradientAscent" seen on one seed does not
    hold over seeds: average gap per seed PS 0.020, 0.038, 0.071; FineTune 0.029, 0.036, 0.008;
    GradientAscent 0.039, 0.054, 0.017 — so it is not asserted.
    """
    runs = [quality_run("PS", "subclass", s) for s in SEEDS]
    for split, bound in PS_TO_RETRAIN.items():
        diff = per_seed(f"ps_vs_retrain/{split}", lambda s: abs(runs[s][split] - runs[s][f"reference/{split}"]))
        assert mean(diff) <= bound, (split, diff)
