# mmdet's default runtime + segext's runner and checkpoint hook (both
# registered subclasses of mmengine's; docs/checkpoints.md):
#   SegextRunner       -- loads checkpoints with torch.load(weights_only=True)
#                         (stock mmengine checkpoints through an exact, scoped
#                         allow-list), robust auto-resume, CPU multi-process
#                         training over gloo with synchronised SyncBN;
#   SafeCheckpointHook -- atomic checkpoints (temp file + fsync + rename),
#                         outdated ones removed only after the new one is on
#                         disk, free space checked first, no numpy or
#                         HistoryBuffer objects in the file.
# A stock mmdet config gets the same with these two lines (+ custom_imports).
_base_ = 'mmdet::_base_/default_runtime.py'
runner_type = 'SegextRunner'
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))
