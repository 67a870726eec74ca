"""Is the model being recorded as a graph (traced, scripted, exported)?"""
import torch

__all__ = ['is_recording']


def is_recording() -> bool:
    """True while ``torch.jit.trace``/``torch.jit.script`` or
    ``torch.onnx.export`` records the model.

    segext's custom autograd functions (chunked CPU ops, the 2-bit unpooling
    that keeps only packed codes for backward) cannot be recorded; their
    callers take a plain-op or upstream path instead, with the same outputs.
    """
    return (torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export())
