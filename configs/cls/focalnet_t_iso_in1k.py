# Isotropic FocalNet-T: patch 16, one stage of 12 blocks at 192 channels, 3 focal
# levels (kernels 3/5/7), ImageNet-1k 224x224. Published top-1 74.1 (5.9M params).
# Same official recipe and evaluation as focalnet_t_srf_in1k.py; drop_path 0.2 as in the
# official configs/focalnet_tiny_iso.yaml.
#   python tools/test.py configs/cls/focalnet_t_iso_in1k.py focalnet_tiny_iso_16.pth
_base_ = './focalnet_t_srf_in1k.py'

# Released weights: focalnet://tiny_iso is NOT obtainable (only ever on the dead official storage,
# microsoft/FocalNet#43); pass a local copy of the official file if you have one.
model = dict(
    backbone=dict(arch='tiny_iso', drop_path_rate=0.2, out_indices=(0, )),  # the only stage
    head=dict(in_channels=192))
