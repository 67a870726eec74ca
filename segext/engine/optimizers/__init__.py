from .nonfinite_skip_optim_wrapper import NonFiniteSkipOptimWrapper

__all__ = ['NonFiniteSkipOptimWrapper']
