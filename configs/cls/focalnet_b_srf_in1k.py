# FocalNet-B (srf: 2 focal levels, kernels 3/5), ImageNet-1k 224x224. Published top-1 83.7.
# Same official recipe and evaluation as focalnet_t_srf_in1k.py; drop_path 0.5 as in the
# official configs/focalnet_base_srf.yaml.
#   python tools/test.py configs/cls/focalnet_b_srf_in1k.py focalnet_base_srf.pth
_base_ = './focalnet_t_srf_in1k.py'

# Released weights: focalnet://base_srf; sources: focalnet_mm/weights/sources.py
model = dict(
    backbone=dict(arch='base_srf', drop_path_rate=0.5),
    head=dict(in_channels=1024))
