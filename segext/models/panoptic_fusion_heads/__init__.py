# Each model family lives in its own module; import it here so that importing
# segext registers it.  Keep ``__all__`` explicit.
from .upsnet_panoptic_head import UPSNetPanopticHead

__all__ = ['UPSNetPanopticHead']
