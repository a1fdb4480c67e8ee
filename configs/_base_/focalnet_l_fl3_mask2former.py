# FocalNet-L fl3 in place of Swin-L in Mask2Former, and the Swin-L recipe's optimizer keys mapped to
# FocalNet's parameter names; shared by configs/det/mask2former_focalnet_l_fl3_*.py and
# configs/seg/mask2former_focalnet_l_fl3_*.py, whose headers give the reasons field by field.
# A second base beside mmdet's / mmseg's Swin-L config: the names here are new to those, so the
# two merge without a clash; the configs take the values with {{_base_.<name>}}.
focalnet_l_fl3_backbone = dict(
    _delete_=True,  # drops every SwinTransformer keyword of the base
    type='FocalNet',
    arch='large_fl3',
    focal_levels=[3, 3, 3, 3],
    focal_windows=[5, 5, 5, 5],  # the ImageNet kernels 5/7/9, as FocalNet-DINO runs FocalNet-L
    drop_path_rate=0.3,  # the Swin-L recipe's (the paper gives none)
    out_indices=(0, 1, 2, 3),
    with_cp=False,
    init_cfg=dict(type='Pretrained', checkpoint='focalnet://large_fl3'))

_depths = [2, 2, 18, 2]
_backbone_norm = dict(lr_mult=0.1, decay_mult=0.0)
_embed = dict(lr_mult=1.0, decay_mult=0.0)
focalnet_l_paramwise_cfg = dict(
    _delete_=True,  # drops the Swin key names (stages.*, relative_position_bias_table, ...)
    norm_decay_mult=0.0,  # every norm no key names (the head's GroupNorms and LayerNorms)
    custom_keys={
        'backbone': dict(lr_mult=0.1, decay_mult=1.0),
        'backbone.patch_embed.norm': _backbone_norm,
        'backbone.norm': _backbone_norm,  # norm0..norm3 on the returned stages
        **{f'backbone.layers.{stage}.blocks.{block}.{name}': _backbone_norm
           for stage, num_blocks in enumerate(_depths) for block in range(num_blocks)
           for name in ('norm', 'gamma')},  # norm1/norm2 and layer-scale gamma_1/gamma_2
        **{f'backbone.layers.{stage}.downsample.norm': _backbone_norm for stage in range(3)},
        'query_embed': _embed,
        'query_feat': _embed,
        'level_embed': _embed,
    })
