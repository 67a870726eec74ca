"""Class-weighted cross entropy averaged over the labelled pixels, the loss
SegNet trains with (Badrinarayanan et al., TPAMI 2017, Sec. 4.1: median
frequency balancing; SegNet-Tutorial's ``SoftmaxWithLoss`` with
``weight_by_label_freqs`` and ``ignore_label``).

    loss = sum_{p labelled} w[y_p] * (-log softmax(x_p)[y_p]) / #labelled

Why not mmseg's ``CrossEntropyLoss(class_weight=...)``:

* mmseg 1.2.2 raises ``IndexError`` as soon as a label map holds the ignore
  value (255) and ``class_weight`` is set — every CamVid batch has void
  pixels.  Its ``cross_entropy`` builds ``class_weight[label]`` for the
  average factor before masking the ignored pixels
  (open-mmlab/mmsegmentation#3734, #3412; fix proposed in #3457, unmerged).
* Even when it works, it divides by the sum of the weights of the labelled
  pixels (PyTorch's weighted mean), whereas Caffe's SoftmaxWithLoss, with
  which SegNet's lr 0.001 was tuned, divides by their number.
"""
from typing import Optional, Sequence

import torch.nn as nn
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import Tensor

__all__ = ['WeightedCrossEntropyLoss']


@MODELS.register_module()
class WeightedCrossEntropyLoss(nn.Module):
    """Class-weighted softmax cross entropy, mean over labelled pixels.

    Args:
        class_weight (Sequence[float], optional): One weight per class (e.g.
            median frequency weights from
            ``tools/dataset_converters/camvid_class_weights.py``). None
            weights every class 1 (plain cross entropy). Default: None.
        loss_weight (float): Multiplier of the loss. Default: 1.0.
        loss_name (str): Key of the loss in the loss dict (must start with
            ``loss_`` to be back-propagated). Default: ``'loss_ce'``.
    """

    def __init__(self,
                 class_weight: Optional[Sequence[float]] = None,
                 loss_weight: float = 1.0,
                 loss_name: str = 'loss_ce'):
        super().__init__()
        if class_weight is not None:
            if isinstance(class_weight, (str, bytes)) or not all(
                    isinstance(w, (int, float)) and w >= 0
                    for w in class_weight):
                raise ValueError(
                    'WeightedCrossEntropyLoss: class_weight must be a '
                    f'sequence of non-negative numbers, got {class_weight!r}')
            class_weight = [float(w) for w in class_weight]
        self.class_weight = class_weight
        self.loss_weight = loss_weight
        self._loss_name = loss_name

    def forward(self,
                cls_score: Tensor,
                label: Tensor,
                weight: Optional[Tensor] = None,
                ignore_index: int = 255,
                **kwargs) -> Tensor:
        """``cls_score`` (N, K, H, W) logits, ``label`` (N, H, W) ids;
        ``weight`` an optional per-pixel weight (mmseg's pixel sampler)."""
        class_weight = None
        if self.class_weight is not None:
            if len(self.class_weight) != cls_score.shape[1]:
                raise ValueError(
                    f'WeightedCrossEntropyLoss: class_weight has '
                    f'{len(self.class_weight)} entries but the logits have '
                    f'{cls_score.shape[1]} classes')
            class_weight = cls_score.new_tensor(self.class_weight)
        loss = F.cross_entropy(cls_score, label, weight=class_weight,
                               reduction='none', ignore_index=ignore_index)
        if weight is not None:
            loss = loss * weight
        num_labelled = (label != ignore_index).sum().clamp(min=1)
        return self.loss_weight * loss.sum() / num_labelled

    @property
    def loss_name(self) -> str:
        return self._loss_name

    def extra_repr(self) -> str:
        return (f'class_weight={self.class_weight}, '
                f'loss_weight={self.loss_weight}')
