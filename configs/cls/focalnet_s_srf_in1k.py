# FocalNet-S (srf: 2 focal levels, kernels 3/5), ImageNet-1k 224x224. Published top-1 83.4.
# Same official recipe and evaluation as focalnet_t_srf_in1k.py; drop_path 0.3 as in the
# official configs/focalnet_small_srf.yaml.
#   python tools/test.py configs/cls/focalnet_s_srf_in1k.py focalnet_small_srf.pth
_base_ = './focalnet_t_srf_in1k.py'

# Released weights: focalnet://small_srf; sources: focalnet_mm/weights/sources.py
model = dict(backbone=dict(arch='small_srf', drop_path_rate=0.3))
