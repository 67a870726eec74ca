# mmseg's default runtime + segext's runner (a registered subclass of
# mmengine's Runner; docs/checkpoints.md): checkpoints loaded with
# torch.load(weights_only=True) (stock mmengine checkpoints through an exact,
# scoped allow-list), robust auto-resume, CPU multi-process training over gloo
# with synchronised SyncBN.
# In mmseg, default_hooks come with the schedule (mmseg::_base_/schedules/*),
# so each config sets default_hooks.checkpoint.type = 'SafeCheckpointHook'
# (atomic checkpoints without numpy objects) next to its schedule.
# A stock mmseg config gets the same with `runner_type = 'SegextRunner'` and
# that hook type (+ custom_imports).
_base_ = 'mmseg::_base_/default_runtime.py'
runner_type = 'SegextRunner'
