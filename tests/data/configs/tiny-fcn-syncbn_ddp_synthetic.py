# The tiny distributed-test model with SyncBN everywhere.  Under DDP (CPU:
# segext.compat's gloo SyncBN) 2 processes x batch 1 must match 1 process x
# batch 2, where mmengine reverts SyncBN to plain BN.
_base_ = ['./tiny-fcn-gn_ddp_synthetic.py']

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(norm_cfg=dict(_delete_=True, **norm_cfg)),
    decode_head=dict(norm_cfg=dict(_delete_=True, **norm_cfg)))
