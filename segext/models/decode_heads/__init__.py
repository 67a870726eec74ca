# Each model family lives in its own module; import it here so that importing
# segext registers it.  Keep ``__all__`` explicit.
from .context_head import ContextHead
from .drn_head import DRNHead
from .segnet_head import SegNetHead

__all__ = ['DRNHead', 'ContextHead', 'SegNetHead']
