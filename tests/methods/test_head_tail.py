"""Models whose last linear layer is not the last operation, and heads registered out of execution order.

Two shapes of user model: Lightning's ``backbone_image_classifier`` example (an MLP backbone
``l1 → ReLU → l2 → ReLU`` inside a LitClassifier, so the class scores are ``relu(l2(·))``), and
PyTorch's MNIST example style, which returns ``log_softmax(fc(·))`` and trains with ``nll_loss``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_unlearn import ClassForget, UnlearningDataModule, unlearn
from lightning_unlearn.methods import PRU, SalUn
from lightning_unlearn.models.anatomy import HeadNotFoundError

SEEDS = (0, 1, 2)


sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from lit_backbone_classifier import LitClassifier  # noqa: E402  (Lightning's example model, as a user has it)

sys.path.pop(0)


class LogSoftmaxNet(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU())
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        return F.log_softmax(self.fc(self.body(x)), dim=1)

    def training_step(self, batch, batch_idx):
        return F.nll_loss(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


@pytest.fixture(scope="module")
def trained() -> dict[int, tuple[LogSoftmaxNet, UnlearningDataModule]]:
    """Per seed: the model trained by its own ``training_step`` (held-out accuracy 0.93-0.96), and its data."""
    out = {}
    for seed in SEEDS:
        dm = UnlearningDataModule("digits", forget=ClassForget(3), seed=seed)
        dm.prepare_data()
        dm.setup()
        L.seed_everything(seed, verbose=False)
        model = LogSoftmaxNet()
        L.Trainer(max_epochs=15, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                  enable_model_summary=False).fit(model, dm.dataloader("train", shuffle=True))
        out[seed] = (model.eval(), dm)
    return out


@pytest.mark.parametrize("method", ["PRU", "SU", "UGradSL", "NegGradPlus", "SalUn"])
def test_a_class_request_is_served_on_a_model_whose_last_linear_layer_is_followed_by_log_softmax(trained, method):
    for seed, (model, dm) in trained.items():
        kept = {k: v.clone() for k, v in model.state_dict().items()}
        outcome = unlearn(model, dm, method=method, seed=seed).unlearning_outcome
        assert outcome.reached, (seed, outcome.summary())
        assert outcome.after["retained_heldout"] >= outcome.before["retained_heldout"] - outcome.guard, outcome.summary()
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in kept.items())  # the user's model is untouched
        if method == "PRU":  # head training cannot use head(embeddings): it runs through the model, and says so
            assert any("through the whole model" in note for note in outcome.notes), outcome.notes


def test_ps_trains_the_head_through_the_operations_after_it(trained):
    """PS does not serve a class of this MLP within the guard, with or without log_softmax after the head
    (seeds 0-2: forget accuracy 0.97 -> 0.40/0.40/0.51 through the model, 0.40/0.36/0.51 on the same model
    returning the head's output); through the model it still unlearns, within the guard, and says how."""
    for seed, (model, dm) in trained.items():
        outcome = unlearn(model, dm, method="PS", seed=seed).unlearning_outcome
        assert outcome.after["forget"] < outcome.before["forget"] - 0.3, outcome.summary()
        assert outcome.after["retained_heldout"] >= outcome.before["retained_heldout"] - outcome.guard, outcome.summary()
        assert any("the head trained through the whole model" in note for note in outcome.notes), outcome.notes


@pytest.mark.parametrize("method", ["BoundaryExpanding"])
def test_a_method_defined_on_the_final_linear_layer_says_what_the_model_does(method):
    dm = UnlearningDataModule("digits", forget=ClassForget(3), seed=0)
    model = LitClassifier(hidden_dim=128)
    with pytest.raises(HeadNotFoundError, match=rf"^{method} .* but LitClassifier applies operations outside its"
                       r" submodules after its final linear layer 'backbone.l2'\. Unlearn with a method that trains"):
        unlearn(model, dm, method=method)


def test_ps_through_the_model_equals_the_cached_path_when_the_head_is_last():
    """The slow path, forced on a model whose output is its head's: the same head as the cached path."""
    from lightning_unlearn import ClassForget, make_trainer
    from lightning_unlearn.methods import PS

    dm = UnlearningDataModule("digits", forget=ClassForget(3), seed=0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    heads = []
    for through in (False, True):
        method = PS(net, epochs=2, target=None, guard=None)
        method._through_model = lambda through=through: through  # type: ignore[method-assign]
        make_trainer(1, limit_val_batches=0).fit(method, datamodule=dm)
        heads.append(torch.cat([method.anatomy.head.weight.detach().flatten(), method.anatomy.head.bias.detach()]))
    assert not torch.equal(heads[0], torch.cat([net[3].weight.flatten(), net[3].bias]).detach())
    torch.testing.assert_close(heads[1], heads[0], rtol=1e-4, atol=1e-5)


def test_pru_classifier_phase_through_the_model_equals_the_cached_path():
    dm = UnlearningDataModule("digits", forget=ClassForget(3), seed=0)
    dm.prepare_data()
    dm.setup()
    torch.manual_seed(0)
    method = PRU(nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)))
    dataset = dm.split_dataset("forget")
    order = torch.randperm(len(dataset))
    cached = list(method._head_chunks(dataset, order, 16, through_model=False))
    full = list(method._head_chunks(dataset, order, 16, through_model=True))
    assert len(cached) == len(full) == -(-len(dataset) // 16)
    for (cached_logits, cached_idx), (full_logits, full_idx) in zip(cached, full):
        assert torch.equal(cached_idx, full_idx)
        torch.testing.assert_close(cached_logits(), full_logits())


class Bottleneck(nn.Module):
    """A 16-wide layer registered after the 64 -> 10 head that gives the class scores (it runs first)."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(64, 10)
        self.wide = nn.Linear(16, 64)
        self.inp = nn.Linear(64, 16)

    def forward(self, x):
        return self.out(torch.relu(self.wide(torch.relu(self.inp(x.flatten(1))))))


def test_the_head_and_class_count_come_from_the_forward_pass_without_num_classes():
    dm = UnlearningDataModule("digits", forget=ClassForget(3), seed=0)
    torch.manual_seed(0)
    method = SalUn(Bottleneck())
    assert method.anatomy.head_name == "inp" and method.num_classes == 16  # the constructor's guess, without data
    unlearn(method.model, dm, method=method)  # a wrong head would give labels up to 15 to a 10-class loss
    assert (method.anatomy.head_name, method.num_classes) == ("out", 10)
