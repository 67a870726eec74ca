# Each model family lives in its own module; import it here so that importing
# segext registers it.  Keep ``__all__`` explicit.
from .context_module import ContextModule

__all__ = ['ContextModule']
