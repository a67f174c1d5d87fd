"""Torchvision architectures (random initialisation, small inputs): anatomy, PS, PRU and UGradSL run on them."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset
from torchvision.models import VisionTransformer, mobilenet_v3_small, resnet18

from lightning_unlearn import ClassForget, UnlearningDataModule, make_trainer
from lightning_unlearn.methods import PRU, PS, UGradSL
from lightning_unlearn.models import Anatomy

C = 4


def _vit():
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=C)
    torch.nn.init.normal_(vit.heads.head.weight, std=0.02)  # torchvision starts it at zero: no gradient would reach the backbone
    return vit


MODELS = {
    "resnet18": (lambda: resnet18(num_classes=C), "fc", 512),
    "mobilenet_v3_small": (lambda: mobilenet_v3_small(num_classes=C), "classifier.3", 1024),
    "vit": (_vit, "heads.head", 32),
}


@pytest.fixture(scope="module")
def dm() -> UnlearningDataModule:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 3, 32, 32, generator=gen), torch.arange(96) % C
    data = UnlearningDataModule.from_datasets(TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:]), ClassForget(1),
                                              num_classes=C, batch_size=16, eval_batch_size=32)
    data.setup()
    return data


@pytest.mark.parametrize("name", MODELS)
def test_anatomy_reads_the_head_from_the_forward_pass(name):
    build, head, dim = MODELS[name]
    torch.manual_seed(0)
    model = build().eval()
    anatomy = Anatomy(model)
    anatomy.inspect(torch.randn(2, 3, 32, 32))
    assert (anatomy.head_name, anatomy.embedding_dim, anatomy.num_classes, anatomy.head_is_output) == (head, dim, C, True)
    logits, emb = anatomy.forward_with_embeddings(torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(anatomy.head(emb), logits)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("method_cls", [PS, PRU, UGradSL], ids=lambda c: c.__name__)
def test_methods_run_and_change_what_they_should(name, method_cls, dm):
    build, head, _ = MODELS[name]
    torch.manual_seed(0)
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method = method_cls(model, target=None, guard=None, max_epochs=1)
    make_trainer(1, limit_val_batches=0).fit(method, datamodule=dm)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # the user's model is untouched
    after = method.model.state_dict()
    changed = {k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])}
    assert changed, "nothing was unlearned"
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    if method_cls is PS:  # head-only surgery
        assert changed <= {f"{head}.weight", f"{head}.bias"}, changed
    else:
        assert any(not k.startswith(head) for k in changed), changed
