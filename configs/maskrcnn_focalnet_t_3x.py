# Entry point of the README: Mask R-CNN FocalNet-T (lrf, kernels 9/11/13), 3x schedule on COCO.
#   python tools/train.py configs/maskrcnn_focalnet_t_3x.py
#   bash tools/dist_train.sh configs/maskrcnn_focalnet_t_3x.py 8
_base_ = './det/maskrcnn_focalnet_t_lrf_3x.py'
