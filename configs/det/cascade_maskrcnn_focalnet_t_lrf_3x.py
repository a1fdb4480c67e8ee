# Cascade Mask R-CNN + FPN, FocalNet-T lrf with per-stage windows [11, 9, 9, 7] (3 levels), 3x.
# Published: 51.5 box AP. Official config (microsoft/FocalNet, mmdet 2.x):
#   detection/configs/focalnet/cascade_mask_rcnn_focalnet_tiny_patch4_mstrain_480-800_adamw_3x_coco_lrf.py
#   (model base: detection/configs/_base_/models/cascade_mask_rcnn_focalnet_fpn.py)
# Same data, optimizer and schedule as Mask R-CNN T lrf 3x; the model turns into mmdet's
# Cascade Mask R-CNN (mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py, field for field; the
# recipe test checks it) with the official 4conv1fc box heads: SyncBN, class-specific GIoU
# regression (weight 10) on decoded boxes.
_base_ = './maskrcnn_focalnet_t_lrf_3x.py'

model = dict(
    type='CascadeRCNN',
    backbone=dict(focal_windows=[11, 9, 9, 7]),  # levels 3 and drop_path 0.3 as the base
    rpn_head=dict(loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=3,
        stage_loss_weights=[1, 0.5, 0.25],
        bbox_head=[
            dict(
                type='ConvFCBBoxHead',
                num_shared_convs=4,
                num_shared_fcs=1,
                in_channels=256,
                conv_out_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=80,
                bbox_coder=dict(
                    type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                    target_stds=stds),
                reg_class_agnostic=False,
                reg_decoded_bbox=True,
                norm_cfg=dict(type='SyncBN', requires_grad=True),
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
            for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                         [0.033, 0.033, 0.067, 0.067])
        ]),
    train_cfg=dict(
        rpn=dict(allowed_border=0),
        rpn_proposal=dict(max_per_img=2000),  # 2.x nms_post=2000 is 3.x max_per_img
        rcnn=[
            dict(
                assigner=dict(
                    type='MaxIoUAssigner',
                    pos_iou_thr=iou,
                    neg_iou_thr=iou,
                    min_pos_iou=iou,
                    match_low_quality=False,
                    ignore_iof_thr=-1),
                sampler=dict(
                    type='RandomSampler',
                    num=512,
                    pos_fraction=0.25,
                    neg_pos_ub=-1,
                    add_gt_as_proposals=True),
                mask_size=28,
                pos_weight=-1,
                debug=False) for iou in (0.5, 0.6, 0.7)
        ]))
