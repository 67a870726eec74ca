# Each model family lives in its own module; import it here so that importing
# segext registers it.  Keep ``__all__`` explicit.
from .weighted_cross_entropy import WeightedCrossEntropyLoss

__all__ = ['WeightedCrossEntropyLoss']
