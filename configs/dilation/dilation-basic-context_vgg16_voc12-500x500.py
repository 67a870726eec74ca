# Front-end + BASIC context module on PASCAL VOC 2012 (Yu & Koltun, ICLR 2016,
# Table 1: every layer C = 21 channels, exact identity initialisation; val
# mIoU 71.3 in the paper).  Same recipe as the large variant.
_base_ = './dilation-large-context_vgg16_voc12-500x500.py'

model = dict(decode_head=dict(context_cfg=dict(arch='basic')))
