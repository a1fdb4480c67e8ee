"""``FocalModulationVisHook``: gate and modulator figures during training.

    custom_imports = dict(imports=['focalnet_mm'],
                          allow_failed_imports=False)
    custom_hooks = [dict(type='FocalModulationVisHook', interval=1, stage=2, block=-1)]

Every ``interval`` epochs (epoch-based loops) or iterations (iteration-based loops), the main
process draws the same figures as ``tools/analysis_tools/visualize_modulation.py`` into
``work_dir/modulation/`` and sends them to the runner's visualizer backends (TensorBoard, W&B,
... when configured in ``visualizer.vis_backends``).
"""
import os.path as osp
from typing import List, Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from .extraction import find_focalnet, resolve_block
from .inputs import list_images


class FocalModulationVisHook(Hook):
    """Draw gate maps and modulator magnitude of one FocalNet block while training.

    Args:
        interval: draw every ``interval`` epochs or iterations (see ``by_epoch``).
        by_epoch: count epochs (True) or iterations (False); None follows the train loop.
        stage, block: which block to look at (stage None: stage 2 (stride 16) or the last stage
            of a shallower model; block -1: the stage's last block).
        images: image files or folders; None takes ``num_images`` images from the validation
            dataset (the training dataset when there is no validation loop).
        num_images: how many dataset images to use when ``images`` is None.
        short_side: images are resized so their short side is this many pixels (0 keeps size).
        draw_before_train: also draw once before the first iteration (the starting point).
        out_dir: folder under ``runner.work_dir`` for the PNGs.
    """

    priority = 'LOW'

    def __init__(self, interval: int = 1, by_epoch: Optional[bool] = None,
                 stage: Optional[int] = None, block: int = -1,
                 images: Optional[Sequence[str]] = None, num_images: int = 2,
                 short_side: int = 512, draw_before_train: bool = True,
                 out_dir: str = 'modulation'):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'FocalModulationVisHook interval={interval!r}: use a positive int.')
        if images is not None and isinstance(images, str):
            images = [images]
        if images is None and num_images < 1:
            raise ValueError('FocalModulationVisHook needs images=[...] or num_images >= 1.')
        self.interval = interval
        self.by_epoch = by_epoch
        self.stage, self.block = stage, block
        self.images = list(images) if images is not None else None
        self.num_images = num_images
        self.short_side = short_side
        self.draw_before_train = draw_before_train
        self.out_dir = out_dir
        self._image_paths: List[str] = []

    # ------------------------------------------------------------------ setup
    def before_train(self, runner) -> None:
        if self.by_epoch is None:
            self.by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        # fail at start, not after the first epoch, on a wrong backbone or block index
        resolve_block(find_focalnet(runner.model), self.stage, self.block)
        self._image_paths = (list_images(self.images) if self.images is not None
                             else self._dataset_images(runner))
        if self.draw_before_train:
            self._draw(runner, 'epoch' if self.by_epoch else 'iter', 0)

    def _dataset_images(self, runner) -> List[str]:
        loop = runner.val_loop
        dataloader = loop.dataloader if loop is not None else runner.train_dataloader
        dataset = dataloader.dataset
        if getattr(dataset, '_fully_initialized', True) is False:
            dataset.full_init()
        count = min(self.num_images, len(dataset))
        paths = [dataset.get_data_info(i).get('img_path') for i in range(count)]
        if not paths or None in paths:
            raise ValueError(f'FocalModulationVisHook: {type(dataset).__name__} items have no '
                             "'img_path'; pass images=['path/to/img.jpg', ...] to the hook.")
        return paths

    # ------------------------------------------------------------------ schedule
    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self._draw(runner, 'iter', runner.iter + 1)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self._draw(runner, 'epoch', runner.epoch + 1)

    # ------------------------------------------------------------------ drawing
    def _draw(self, runner, unit: str, count: int) -> None:
        if not is_main_process():
            return
        from .render import render_modulation  # matplotlib: imported when the first figure is due
        out_dir = osp.join(runner.work_dir, self.out_dir)
        rendered = render_modulation(
            runner.model, self._image_paths, out_dir, stage=self.stage, block=self.block,
            short_side=self.short_side, weights=f'{unit} {count}', suffix=f'_{unit}{count}')
        for item in rendered:
            # flat names: LocalVisBackend writes '<name>_<step>.png' into one folder
            runner.visualizer.add_image(f'modulation_{item.name}', item.figure, step=runner.iter)
        runner.logger.info(f'FocalModulationVisHook: {len(rendered)} figure(s) at {unit} {count} '
                           f'in {out_dir}')


#: registries the hook is added to: mmengine's root HOOKS, and each installed library's own
