from .loops import ExactResumeIterBasedTrainLoop
from .segext_runner import SegextRunner, cpu_model_wrapper_cfg

__all__ = [
    'ExactResumeIterBasedTrainLoop', 'SegextRunner', 'cpu_model_wrapper_cfg'
]
