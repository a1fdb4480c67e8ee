# FocalNet-T (lrf: 3 focal levels, kernels 3/5/7), ImageNet-1k 224x224. Published top-1 82.3.
# Same official recipe and evaluation as focalnet_t_srf_in1k.py; drop_path 0.2 as in the
# official configs/focalnet_tiny_lrf.yaml.
#   python tools/test.py configs/cls/focalnet_t_lrf_in1k.py focalnet_tiny_lrf.pth
_base_ = './focalnet_t_srf_in1k.py'

# Released weights: focalnet://tiny_lrf; sources: focalnet_mm/weights/sources.py
model = dict(backbone=dict(arch='tiny_lrf', drop_path_rate=0.2))
