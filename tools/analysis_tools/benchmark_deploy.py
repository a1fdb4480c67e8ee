"""Latency of an exported model (ONNX Runtime) next to PyTorch eager, on the same image and data.

    OMP_NUM_THREADS=2 python tools/analysis_tools/benchmark_deploy.py configs/maskrcnn_focalnet_t_3x.py \\
        --shape 800 1333 --threads 2 --repeat 5

Exports CONFIG (with --checkpoint, else one set of initial weights for both sides) at a static
--shape unless --onnx gives an export of it, then times ``test_step`` of both (preprocessing,
network, post-processing, masks pasted at the image size) in one process, alternating, after one
warm-up each. Prints a table and writes it as JSON (--out). Latency does not depend on the
weights, except through the number of detections whose masks are computed: the table lists it.
"""
import argparse
import json
import os
import os.path as osp
import platform
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import focalnet_mm  # noqa: E402,F401


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='ONNX Runtime vs PyTorch eager latency')
    parser.add_argument('config', help='det / seg / cls config')
    parser.add_argument('--checkpoint', help='weights (default: the initial ones)')
    parser.add_argument('--onnx', help='an existing export of CONFIG and --checkpoint (default: export '
                        'to a temp dir)')
    parser.add_argument('--shape', nargs=2, type=int, default=(800, 1333), metavar=('H', 'W'))
    parser.add_argument('--image', help='input image (default: random pixels at --shape)')
    parser.add_argument('--threads', type=int, default=int(os.environ.get('OMP_NUM_THREADS', '1')),
                        help='intra-op threads for both (default: OMP_NUM_THREADS or 1)')
    parser.add_argument('--repeat', type=int, default=5, help='timed runs of each')
    parser.add_argument('--out', help='write the results as JSON here')
    return parser.parse_args(argv)


def ort_threads(backend_model, onnx_file, threads):
    """Recreate MMDeploy's ONNX Runtime session with ``threads`` intra-op threads (it uses all
    physical cores by default)."""
    import onnxruntime as ort
    from mmdeploy.backend.onnxruntime.init_plugins import get_ops_path
    wrapper = backend_model.wrapper
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    if osp.exists(get_ops_path()):
        options.register_custom_ops_library(get_ops_path())
    wrapper.sess = ort.InferenceSession(onnx_file, options,
                                        providers=['CPUExecutionProvider'])
    wrapper.io_binding = wrapper.sess.io_binding()


def main(argv=None):
    args = parse_args(argv)
    if args.onnx and not args.checkpoint:
        sys.exit('error: --onnx needs the --checkpoint it was exported from (PyTorch runs the same weights)')
    import numpy as np
    import torch
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import DefaultScope
    from PIL import Image

    from focalnet_mm.config.loading import load_config
    from focalnet_mm.deploy import build_backend_model, build_pytorch_model, export, static_test_pipeline
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    work = tempfile.mkdtemp(prefix='benchmark_deploy_')
    image = args.image
    if image is None:
        image = osp.join(work, 'image.png')
        h, w = args.shape
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(image)
    checkpoint = args.checkpoint
    if checkpoint is None:  # one set of initial weights for both sides
        checkpoint = osp.join(work, 'initial.pth')
        torch.save(dict(state_dict=build_pytorch_model(cfg, None).state_dict(), meta={}), checkpoint)
    onnx_file = args.onnx
    if onnx_file is None:
        print(f'exporting {args.config} at {args.shape[0]}x{args.shape[1]} ...', flush=True)
        onnx_file = export(cfg, checkpoint, work, image, shape=args.shape)
    static = static_test_pipeline(cfg, args.shape)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        pipeline = Compose([t for t in static.test_pipeline if 'Annotation' not in t['type']])
        data = pseudo_collate([pipeline(dict(img_path=image))])
        models = dict(pytorch=build_pytorch_model(cfg, checkpoint),
                      onnxruntime=build_backend_model(onnx_file))
        ort_threads(models['onnxruntime'], onnx_file, args.threads)
        times = {name: [] for name in models}
        outputs = {}
        with torch.no_grad():
            for name, model in models.items():  # warm-up
                outputs[name] = model.test_step(data)[0]
            for i in range(args.repeat):
                for name, model in models.items():
                    start = time.perf_counter()
                    model.test_step(data)
                    times[name].append(time.perf_counter() - start)
                print(f'  run {i + 1}/{args.repeat}: ' + ', '.join(
                    f'{n} {t[-1] * 1000:.0f} ms' for n, t in times.items()), flush=True)
    import mmdeploy
    import onnxruntime
    result = dict(
        config=args.config, input=list(data['inputs'][0].shape), threads=args.threads,
        machine=f'{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs',
        load_average=os.getloadavg(), versions=dict(
            torch=torch.__version__, onnxruntime=onnxruntime.__version__, mmdeploy=mmdeploy.__version__),
        ms={n: dict(median=1000 * statistics.median(t), min=1000 * min(t)) for n, t in times.items()})
    if 'pred_instances' in outputs['pytorch']:
        result['detections'] = {n: len(o.pred_instances) for n, o in outputs.items()}
    for name, ms in result['ms'].items():
        print(f'{name:12s} median {ms["median"]:8.0f} ms   min {ms["min"]:8.0f} ms')
    speedup = result['ms']['pytorch']['median'] / result['ms']['onnxruntime']['median']
    context = {k: result[k] for k in ('input', 'threads', 'load_average', 'versions')}
    print(f'speed-up (median): {speedup:.2f}x; {json.dumps(context)}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(result, f, indent=1)
    shutil.rmtree(work)  # the export (about 200 MB for Mask R-CNN) and the image
    return result


if __name__ == '__main__':
    main()
