# Each model family lives in its own module; import it here so that importing
# segext registers it.  Keep ``__all__`` explicit.
from .upsnet_semantic_head import UPSNetSemanticHead

__all__ = ['UPSNetSemanticHead']
