from .loops import ExactResumeIterBasedTrainLoop

__all__ = ['ExactResumeIterBasedTrainLoop']
