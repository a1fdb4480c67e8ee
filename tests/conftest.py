"""Shared test helpers: the repository root, tool loading, a local HTTP server, and the real
sample data in ../shared/data (skipped when absent)."""
import contextlib
import functools
import gc
import http.server
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import threading
import time
import types

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SHARED_DATA = os.environ.get('FOCALNET_SHARED_DATA', osp.join(REPO_ROOT, '..', 'shared', 'data'))

# One thread per process: the end-to-end tests start tool subprocesses (two at a time for the
# distributed runs) on a 2-core machine, and oversubscribed OpenMP threads are 10-100x slower.
# torch is imported by the tests, not here: pytest-xdist's controller process runs no test and
# loads this file first, before it starts the workers (torch's import is ~4 s of that wait).
os.environ.setdefault('OMP_NUM_THREADS', '1')


@pytest.hookimpl(wrapper=True)
def pytest_collection(session):
    """Collection imports torch and the OpenMMLab stack (~600k objects that live as long as the
    process): no garbage collection while it imports, then those objects are frozen out of every
    later full collection, which would rescan them each time (0.2-0.5 s each). Fewer, larger
    young collections after that: the tests allocate many short-lived containers. Together ~8 CPU s
    of each worker's quick loop (tests/README.md, Times); the objects the tests make are collected as
    before."""
    gc.disable()
    try:
        return (yield)
    finally:
        gc.freeze()
        gc.set_threshold(7000, 20, 20)
        gc.enable()


@pytest.fixture(autouse=True, scope='session')
def one_torch_thread():
    """One intra-op thread in each process that runs tests, whatever OMP_NUM_THREADS says."""
    import torch
    torch.set_num_threads(1)


def load_tool(relative_path, name=None):
    """A script under the repository root (e.g. 'tools/infer.py') imported as a module."""
    from focalnet_mm.scripts import load_script
    return load_script(osp.join(REPO_ROOT, relative_path), name)


def free_port():
    """A TCP port free on 127.0.0.1 now (for a process group's MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def dist_train(args, timeout):
    """``bash tools/dist_train.sh ARGS`` run from the repository root, finished: a free port (a
    second try if another process took it meanwhile, e.g. another pytest-xdist worker), this
    interpreter (a worktree or CI clone may have no .venv of its own), one thread per rank, no GPU."""
    for _ in range(2):
        env = dict(os.environ, PORT=str(free_port()), PYTHON=sys.executable, OMP_NUM_THREADS='1',
                   CUDA_VISIBLE_DEVICES='')
        proc = subprocess.run(['bash', osp.join(REPO_ROOT, 'tools', 'dist_train.sh'), *args],
                              cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        if 'address already in use' not in (proc.stdout + proc.stderr).lower():
            break
    return proc


def perturb_(model, seed=0):
    """Random non-trivial values everywhere (norm weights too), so a swapped key shows."""
    import torch
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


@pytest.fixture
def yacs_cfg_node(monkeypatch):
    """A stand-in ``yacs.config.CfgNode`` (the official training code pickles its config as one)."""
    yacs, yacs_config = types.ModuleType('yacs'), types.ModuleType('yacs.config')

    class CfgNode(dict):
        pass

    CfgNode.__module__, CfgNode.__qualname__ = 'yacs.config', 'CfgNode'
    yacs_config.CfgNode = CfgNode
    monkeypatch.setitem(sys.modules, 'yacs', yacs)
    monkeypatch.setitem(sys.modules, 'yacs.config', yacs_config)
    return CfgNode


@contextlib.contextmanager
def default_scope_kept():
    """mmengine's default scopes as they were before the block: the current DefaultScope is the
    last one created (a tool run in-process leaves its own behind) and the libraries' registries
    build in it."""
    from mmengine.registry import DefaultScope
    before = dict(DefaultScope._instance_dict)
    try:
        yield
    finally:
        DefaultScope._instance_dict.clear()
        DefaultScope._instance_dict.update(before)


@pytest.fixture(autouse=True)
def default_scope_as_found():
    """Each test leaves mmengine's default scope as it found it, so a later test's
    ``MODELS.build`` does not depend on the test order."""
    with default_scope_kept():
        yield


@functools.lru_cache(maxsize=None)
def parsed_config(path):
    """``Config.fromfile(path)``, parsed once per process and shared by the test modules that read
    the same configs (parsing resolves the libraries' base files: ~0.1 s a config). Read only: a
    test that changes a config changes ``copy.deepcopy`` of it."""
    from mmengine.config import Config
    return Config.fromfile(path)


def sweep(values, quick):
    """Parameters of a sweep over every config or preset: the ``quick`` ones run in the quick loop,
    the others are marked slow and run in the whole suite (they repeat the quick ones' code paths
    at other sizes). ``quick`` must name values of the sweep."""
    values = list(values)
    unknown = set(quick) - set(values)
    assert not unknown, f'quick values not in the sweep: {sorted(unknown)}'
    return [v if v in quick else pytest.param(v, marks=pytest.mark.slow) for v in values]


def shared_dataset(name):
    path = osp.join(SHARED_DATA, name)
    if not osp.isdir(path):
        pytest.skip(f'{path} not found: these tests use the real sample data that CI provides in '
                    '../shared/data (set FOCALNET_SHARED_DATA to point elsewhere)')
    return path


@pytest.fixture
def coco_mini():
    """6 real COCO 2017 images with their instance annotations (one image without objects)."""
    return shared_dataset('coco_mini')


@pytest.fixture
def camvid_mini():
    """5 real CamVid street frames with 32-class label maps."""
    return shared_dataset('camvid_mini')


@pytest.fixture
def repo_root():
    return REPO_ROOT


#: Prepended to a script run under Triton's interpreter. The interpreter checks every 32-bit
#: integer add, sub and mul for overflow (about 40 % of its time on these kernels); compiled
#: kernels check nothing unless built with debug=True, and the maps tested here index far below
#: 2**31, so the check could not fire and only costs time.
_INTERPRETER_PREAMBLE = (
    'import dataclasses\n'
    'from triton.runtime.interpreter import interpreter_builder as _builder\n'
    '_builder.options = dataclasses.replace(_builder.options, sanitize_overflow=False)\n')


def run_triton_script(script, *args, timeout, interpret=True):
    """``python -c script args`` from the repository root, under the Triton interpreter unless
    ``interpret`` is False (compiled kernels on a GPU). A subprocess: triton reads
    ``TRITON_INTERPRET`` when its kernels are defined. Fails with the script's stderr; returns
    its stdout."""
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('FOCALNET_IMPL', None)
    env.pop('TRITON_INTERPRET', None)
    if interpret:
        env['TRITON_INTERPRET'] = '1'
        script = _INTERPRETER_PREAMBLE + script
    proc = subprocess.run([sys.executable, '-c', script, *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


# ------------------------------------------------------------------ built once per test run
def shared_root(tmp_path_factory):
    """This run's temporary folder that every pytest-xdist worker sees (a worker's own basetemp
    is a child of it; without xdist it is the basetemp itself)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get('PYTEST_XDIST_WORKER') else base


def build_once(tmp_path_factory, name, build):
    """``build(folder)``'s JSON-able result, built in ``folder`` once per test run whatever the
    workers: under a file lock in :func:`shared_root` (the pattern pytest-xdist documents), the
    first worker builds, the others wait and read. A failed build leaves nothing behind and the
    next test that asks builds again (and fails with its own error). Built in-process, without
    leaking torch's random state or mmengine's default scope into the test that asked first."""
    import torch
    from filelock import FileLock  # a dependency of torch
    root = shared_root(tmp_path_factory)
    folder, done = root / f'shared_{name}', root / f'shared_{name}.json'
    with FileLock(str(root / f'shared_{name}.lock')):
        if not done.is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            with default_scope_kept(), torch.random.fork_rng():
                result = build(folder)
            done.write_text(json.dumps(result))
    return json.loads(done.read_text())


@pytest.fixture(scope='session')
def maskrcnn_coco_mini_run(tmp_path_factory):
    """FocalNet-T Mask R-CNN (test_det_e2e.write_coco_mini_config: 320 px, 80 classes) trained
    2 iterations on coco_mini by tools/train.py, once per run: training it is a third of each
    test that needs a trained detector. Returns the config, the work dir (iter_1.pth, iter_2.pth,
    last_checkpoint), the runner's final iteration and its log. Tests only read them: one that
    resumes or writes copies the work dir (:func:`copy_work_dir`) or writes into its own."""
    coco_mini = shared_dataset('coco_mini')

    def build(folder):
        import torch
        from test_det_e2e import read_log, write_coco_mini_config
        torch.manual_seed(0)
        config = write_coco_mini_config(folder, coco_mini)
        work_dir = str(folder / 'work_dir')
        # a fixed seed: the same weights every run (mmengine draws one otherwise), so the tests
        # that compare its near-tied detections across runtimes see the same scores each time
        runner = load_tool('tools/train.py', 'shared_maskrcnn_train').main(
            [config, '--work-dir', work_dir, '--cfg-options', 'randomness.seed=0'])
        return dict(config=config, work_dir=work_dir, iter=runner.iter, log=read_log(runner))
    return build_once(tmp_path_factory, 'maskrcnn_coco_mini', build)


@pytest.fixture(scope='session')
def upernet_camvid_run(tmp_path_factory):
    """The tiny UPerNet FocalNet of test_seg_train.camvid_config trained 8 iterations on
    camvid_mini (1/4 size, 32 classes) by tools/train.py, once per run: the seg end-to-end test
    and the UPerNet export both need a trained segmentor. Returns the classes, the data root, the
    config and the work dir (iter_8.pth, vis_data/scalars.json); tests only read them."""
    camvid_mini = shared_dataset('camvid_mini')

    def build(folder):
        from test_seg_train import camvid_config, layout_camvid
        classes = layout_camvid(camvid_mini, folder / 'camvid')
        config = camvid_config(folder, folder / 'camvid', classes)
        work_dir = str(folder / 'work')
        load_tool('tools/train.py', 'shared_upernet_train').main([config, '--work-dir', work_dir])
        return dict(classes=classes, root=str(folder / 'camvid'), config=config, work_dir=work_dir)
    return build_once(tmp_path_factory, 'upernet_camvid', build)


@pytest.fixture(scope='session')
def custom_det_run(tmp_path_factory):
    """The detection template (configs/det/custom) edited for coco_mini renamed as a 4-class set
    (test_custom_dataset.make_det_set / det_config), tiny model (TINY_DET), trained 2 epochs by
    tools/train.py, once per run: the custom-set end-to-end test and the class-order test check
    the same training. Returns the data root, its number of objects, the config, the work dir,
    the runner's epoch and iteration, the run's log, and the class names the training's data set
    gives each image's objects (``labelled``: [image id, [names]] pairs, from its labels). Tests
    only read them."""
    coco_mini = shared_dataset('coco_mini')

    def build(folder):
        from test_custom_dataset import TINY_DET, det_config, make_det_set, read_log
        num_objects = make_det_set(coco_mini, folder / 'data')
        config = det_config(folder, folder / 'data')
        work_dir = str(folder / 'work')
        runner = load_tool('tools/train.py', 'shared_custom_det_train').main(
            [config, '--work-dir', work_dir, '--cfg-options'] + TINY_DET +
            ['visualizer.name=custom_det_train'])
        dataset = runner.train_dataloader.dataset
        while hasattr(dataset, 'dataset'):  # SkipBadSamples
            dataset = dataset.dataset
        classes = dataset.metainfo['classes']
        labelled = [[info['img_id'], [classes[o['bbox_label']] for o in info['instances']]]
                    for info in map(dataset.get_data_info, range(len(dataset)))]
        return dict(data_root=str(folder / 'data'), num_objects=num_objects, config=config,
                    work_dir=work_dir, epoch=runner.epoch, iter=runner.iter, log=read_log(work_dir),
                    labelled=labelled)
    return build_once(tmp_path_factory, 'custom_det', build)


def copy_work_dir(src, dst):
    """A copy of a shared training's work dir that a test may resume in or write to: its
    last_checkpoint names the copy's checkpoint, not the shared one."""
    shutil.copytree(src, dst)
    last = osp.join(dst, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            checkpoint = f.read().strip()
        with open(last, 'w') as f:
            f.write(osp.join(str(dst), osp.relpath(checkpoint, src)))
    return str(dst)


#: FocalNet-T's classifier with one block per stage (T's widths, stem, levels and head): what an
#: export proves does not depend on the number of blocks, and tracing 12 of them took seconds
CLS_T_SHALLOW = {'model.backbone.depths': [1, 1, 1, 1]}
#: the same, as a tool's command-line flags
CLS_T_SHALLOW_ARGS = ['--cfg-options'] + [f'{k}={v}'.replace(' ', '') for k, v in CLS_T_SHALLOW.items()]


@pytest.fixture(scope='session')
def cls_t_checkpoint(tmp_path_factory):
    """The FocalNet-T ImageNet classifier (configs/cls/focalnet_t_srf_in1k.py with
    ``CLS_T_SHALLOW``) with its initial weights, built once per run: (the model, its
    mmengine checkpoint file). Tests only read both."""
    import torch

    from focalnet_mm.config.loading import load_config
    from focalnet_mm.deploy import build_pytorch_model
    torch.manual_seed(0)
    cfg = load_config(osp.join(REPO_ROOT, 'configs', 'cls', 'focalnet_t_srf_in1k.py'))
    cfg.merge_from_dict(CLS_T_SHALLOW)
    model = build_pytorch_model(cfg, None)
    model.init_weights()
    path = str(tmp_path_factory.mktemp('cls_t') / 'cls.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model.eval(), path


class Server:
    """A real HTTP server on 127.0.0.1 (threads, HTTP/1.0: one request per connection).

    ``routes`` maps a path to (status, body, headers, length, delay): ``length`` is the
    Content-Length announced (a larger one than ``len(body)`` is a body cut short), ``delay``
    seconds pass before the body is sent. ``requests`` lists the paths asked for.
    """

    def __init__(self):
        self.routes, self.requests = {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                status, body, headers, length, delay = server.routes.get(
                    self.path, (404, b'not found', {}, None, 0))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header('Content-Length', str(len(body) if length is None else length))
                self.end_headers()
                time.sleep(delay)
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.base = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        threading.Thread(target=self.httpd.serve_forever, kwargs=dict(poll_interval=0.05),
                         daemon=True).start()

    def add(self, path, body, status=200, headers=None, length=None, delay=0):
        self.routes[path] = (status, body, dict(headers or {}), length, delay)
        return self.base + path

    def redirect(self, path, to, status=302):
        """``path`` answers ``status`` with ``Location: to`` (what the release and the hub do)."""
        return self.add(path, b'', status, headers={'Location': to})

    def body(self, path):
        return self.routes[path][1]

    def count(self, path):
        return self.requests.count(path)


@pytest.fixture
def server(monkeypatch):
    """A local :class:`Server`; proxies from the environment are bypassed for it."""
    for var in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    srv = Server()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
