# Each model family lives in its own module; import it here so that importing
# segext registers it.  Keep ``__all__`` explicit.
from .conv_cl import ChannelsLastConv2d
from .deform_conv import (DeformConv2dWithOffset, deform_conv2d,
                          select_deform_conv_impl)
from .sync_bn import CPUSyncBatchNorm
from .unpool import (CompactMaxPool2d, CompactMaxUnpool2d, PoolIndices,
                     max_pool2d_compact, max_unpool2d_compact)

__all__ = [
    'ChannelsLastConv2d', 'DeformConv2dWithOffset', 'deform_conv2d',
    'select_deform_conv_impl', 'CompactMaxPool2d',
    'CompactMaxUnpool2d', 'PoolIndices', 'max_pool2d_compact',
    'max_unpool2d_compact', 'CPUSyncBatchNorm'
]
