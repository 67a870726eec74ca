"""WeightedCrossEntropyLoss: SegNet's class-weighted cross entropy, averaged
over the labelled pixels (Caffe SoftmaxWithLoss, weight_by_label_freqs)."""
import pytest
import torch
import torch.nn.functional as F
from mmseg.models.losses import CrossEntropyLoss
from mmseg.registry import MODELS

from segext.models.losses import WeightedCrossEntropyLoss


def test_formula_with_ignored_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, requires_grad=True)
    label = torch.randint(0, 3, (2, 4, 5))
    label[0, 0] = 255
    w = [0.5, 2.0, 4.0]
    loss = WeightedCrossEntropyLoss(class_weight=w, loss_weight=2.0)(
        logits, label)
    logp = F.log_softmax(logits, 1)
    valid = label != 255
    picked = logp.permute(0, 2, 3, 1)[valid].gather(
        1, label[valid][:, None])[:, 0]
    expected = -(torch.tensor(w)[label[valid]] * picked).sum() / valid.sum()
    torch.testing.assert_close(loss, 2.0 * expected)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    # unweighted: the usual mean over labelled pixels
    plain = WeightedCrossEntropyLoss()(logits, label)
    torch.testing.assert_close(plain, F.cross_entropy(logits, label,
                                                      ignore_index=255))
    assert MODELS.get('WeightedCrossEntropyLoss') is WeightedCrossEntropyLoss


def test_mmseg_class_weight_with_ignore_still_broken():
    """Why this loss exists: if mmseg's own class-weighted loss stops
    raising here, the upstream bug (mmsegmentation#3734) is fixed."""
    label = torch.zeros(1, 2, 2, dtype=torch.long)
    label[0, 0, 0] = 255
    with pytest.raises(IndexError):
        CrossEntropyLoss(class_weight=[1., 2.])(torch.randn(1, 2, 2, 2),
                                                 label, ignore_index=255)


def test_bad_weights_are_named():
    with pytest.raises(ValueError, match=r"class_weight must be.*'w.txt'"):
        WeightedCrossEntropyLoss(class_weight='w.txt')
    loss = WeightedCrossEntropyLoss(class_weight=[1., 2.])
    with pytest.raises(ValueError, match='2 entries but the logits have 3'):
        loss(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
