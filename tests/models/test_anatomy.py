"""Backbone/head anatomy on the reference networks and on a user-defined model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_unlearn.models import AllCNN, Anatomy, Classifier, HeadNotFoundError, LeNet5, build_model, resnet18_cifar


class UserNet(nn.Module):
    """A model written by a user: the head is not the last registered Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Tanh())
        self.out = nn.Linear(32, 5)
        self.aux = nn.Linear(32, 2)  # an auxiliary layer, not the classifier

    def forward(self, x):
        return self.out(self.trunk(x))


@pytest.mark.parametrize(
    "model, head, dim, shape",
    [
        (LeNet5(10, 1, 28), "fc", 84, (2, 1, 28, 28)),
        (AllCNN(10, 3, width=8), "classifier", 16, (2, 3, 32, 32)),
        (resnet18_cifar(10), "fc", 512, (2, 3, 32, 32)),
        (Classifier("lenet5"), "model.fc", 84, (2, 1, 28, 28)),
    ],
    ids=["lenet5", "allcnn", "resnet18", "classifier"],
)
def test_reference_models(model, head, dim, shape):
    anatomy = Anatomy(model, num_classes=10)
    assert anatomy.head_name == head and anatomy.embedding_dim == dim
    x = torch.randn(shape)
    model.eval()
    logits, emb = anatomy.forward_with_embeddings(x)
    assert emb.shape == (2, dim)
    torch.testing.assert_close(anatomy.head(emb), logits)
    n_head = sum(p.numel() for p in anatomy.head_parameters())
    n_backbone = sum(p.numel() for p in anatomy.backbone_parameters())
    assert n_head == dim * 10 + 10 and n_head + n_backbone == sum(p.numel() for p in model.parameters())
    assert not anatomy.head._forward_hooks  # the capture hook is removed


def test_user_model_by_class_count_and_by_path():
    model = UserNet()
    assert Anatomy(model, num_classes=5).head_name == "out"
    assert Anatomy(model, head="out").embedding_dim == 32
    x = torch.randn(3, 4, 4)
    logits, emb = Anatomy(model, num_classes=5).forward_with_embeddings(x)
    assert logits.shape == (3, 5) and emb.shape == (3, 32)
    # Without the class count the last Linear is taken; it is not the output, which is detected.
    with pytest.raises(HeadNotFoundError, match="'aux' was not called during the forward pass"):
        Anatomy(model).forward_with_embeddings(x)


def test_errors_name_what_was_searched():
    with pytest.raises(HeadNotFoundError, match=r"No nn.Linear head with out_features=7 .*trunk.1\(out_features=32\).*Pass `head="):
        Anatomy(UserNet(), num_classes=7)
    with pytest.raises(HeadNotFoundError, match="searched all nn.Linear submodules: none"):
        Anatomy(nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten()), num_classes=3)
    with pytest.raises(HeadNotFoundError, match="`head`='trunk.2' names a Tanh, expected an nn.Linear"):
        Anatomy(UserNet(), head="trunk.2")
    with pytest.raises(HeadNotFoundError, match="`head`='nope' does not name a submodule of UserNet"):
        Anatomy(UserNet(), head="nope")
    with pytest.raises(HeadNotFoundError, match="has out_features=2, expected num_classes=5"):
        Anatomy(UserNet(), num_classes=5, head="aux")


def test_weight_tying_is_rejected():
    emb = nn.Embedding(5, 8)
    head = nn.Linear(8, 5, bias=False)
    head.weight = emb.weight
    model = nn.Sequential(emb, nn.Flatten(), head)
    with pytest.raises(HeadNotFoundError, match="shares its parameter with 0.weight \\(weight tying\\)"):
        Anatomy(model, num_classes=5)


def test_operations_after_the_head_are_read_from_the_forward_pass():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU())
    anatomy = Anatomy(model, num_classes=3)
    anatomy.inspect(torch.randn(2, 4))
    assert anatomy.head_is_output is False and anatomy.after_head == ("2 (ReLU)",)
    logits, emb = anatomy.forward_with_embeddings(torch.randn(2, 4))  # the model's output and the head's input
    assert logits.min() >= 0 and emb.shape == (2, 4)
    with pytest.raises(HeadNotFoundError, match=r"^PS trains .* but Sequential applies 2 \(ReLU\) after its final linear layer '1'"):
        anatomy.require_head_output("PS", "trains its head on cached embeddings")
    plain = Anatomy(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), num_classes=3)
    plain.inspect(torch.randn(2, 4))
    assert plain.head_is_output is True and plain.after_head == ()
    plain.require_head_output("PS", "trains its head on cached embeddings")  # nothing to refuse


class Bottleneck(nn.Module):
    """The class scores come from a 64 -> 10 layer; a 16-wide layer registered after it runs first."""

    def __init__(self) -> None:
        super().__init__()
        self.out = nn.Linear(64, 10)
        self.wide = nn.Linear(16, 64)
        self.inp = nn.Linear(8, 16)

    def forward(self, x):
        return self.out(torch.relu(self.wide(torch.relu(self.inp(x)))))


def test_the_head_is_the_layer_that_gives_the_output_whatever_the_registration_order():
    anatomy = Anatomy(Bottleneck())  # without data: the last registered nn.Linear, a guess
    assert anatomy.head_name == "inp"
    anatomy.inspect(torch.randn(2, 8))
    assert (anatomy.head_name, anatomy.num_classes, anatomy.embedding_dim) == ("out", 10, 64)
    assert anatomy.head_is_output is True
    spare = Bottleneck()
    spare.unused = nn.Linear(64, 7)  # has the asked width but never runs
    with pytest.raises(HeadNotFoundError, match=r"No nn.Linear with 7 outputs runs in Bottleneck's forward pass \(it returns"
                       r" 10 values per input; the nn.Linear layers that ran: inp\(out_features=16\), wide"):
        Anatomy(spare, num_classes=7).inspect(torch.randn(2, 8))
    with pytest.raises(HeadNotFoundError, match="returns a tuple for a batch"):
        Anatomy(_TwoOutputs(), num_classes=3).inspect(torch.randn(2, 4))


class _TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x), x


def test_build_model_shapes_and_bad_name():
    for name, shape in (("lenet5", (1, 8, 8)), ("allcnn", (1, 28, 28)), ("resnet18", (3, 32, 32))):
        net = build_model(name, 10, shape)
        assert net(torch.randn(2, *shape)).shape == (2, 10)
    with pytest.raises(ValueError, match="`model` must be one of \\['allcnn', 'lenet5', 'resnet18'\\], got 'vgg'"):
        build_model("vgg", 10, (1, 28, 28))
