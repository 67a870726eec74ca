# Each model family lives in its own module; import it here so that importing
# segext registers it.  Keep ``__all__`` explicit.
from .dilated_vgg import DilatedVGG
from .drn import DRN, DRNBasicBlock
from .segnet_vgg import SegNetEncoderOutput, SegNetVGG

__all__ = ['DRN', 'DRNBasicBlock', 'DilatedVGG', 'SegNetVGG',
           'SegNetEncoderOutput']
