"""focalnet-mm: the FocalNet backbone as a plugin for MMDetection, MMSegmentation and MMPretrain.

torch and mmcv are not declared: pip cannot build mmcv's compiled ops by itself. Use
``bash tools/setup_env.sh`` (see README) to get the whole stack, or install into an environment
that already has torch + mmcv 2.1.0: ``pip install "focalnet-mm[det,seg]"``.

Like mmdet and mmseg, the package carries its configs, tools and model index in
``focalnet_mm/.mim`` (what ``focalnet_mm::`` config bases and ``mim`` read): linked to the
repository's folders for an editable install, copied for a wheel or sdist.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
#: what goes into focalnet_mm/.mim (mmdet ships the same kind of folder)
MIM_FILES = ['configs', 'tools', 'demo', 'model-index.yml', 'metafile.yml']


def read_version():
    scope = {}
    with open(osp.join(HERE, 'focalnet_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension():
    """Fill focalnet_mm/.mim: symlinks for an editable install, copies when building a wheel/sdist.

    Other setuptools commands (egg_info, dist_info) leave it as it is; outside a repository
    checkout (building a wheel from our sdist) the sdist already holds the copies.
    """
    if {'develop', 'editable_wheel'} & set(sys.argv):
        mode = 'symlink'
    elif {'sdist', 'bdist_wheel', 'build', 'build_py'} & set(sys.argv):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'focalnet_mm', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(HERE, name), osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)


add_mim_extension()

setup(
    name='focalnet-mm',
    version=read_version(),
    description='FocalNet (Focal Modulation Networks) backbone for OpenMMLab 2.x',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['focalnet_mm', 'focalnet_mm.*']),
    package_data={'focalnet_mm': [
        '.mim/model-index.yml', '.mim/metafile.yml', '.mim/demo/*',
        '.mim/configs/**/*.py', '.mim/tools/**/*.py', '.mim/tools/**/*.sh']},
    python_requires='>=3.9,<3.13',
    install_requires=[
        'mmengine==0.10.7',
        # mmengine 0.10.7 imports pkg_resources (removed in setuptools 82) when it resolves
        # mmdet::/mmseg:: config bases and in mmdet's/mim's tools
        'setuptools<82',
        # numpy 2 works with this stack (README "Use it in your own project"); no upper bound, so
        # a user's numpy and opencv are kept
        'numpy',
        'safetensors',
        'tqdm',
        'matplotlib',
    ],
    extras_require={
        # the libraries declare the rest of what they need (pycocotools, scipy, ...); not what
        # they import without declaring it: panopticapi-lite is the `panopticapi` module
        # (cocodataset/panopticapi) that mmdet's CocoPanopticMetric imports, from PyPI
        'det': ['mmdet==3.3.0', 'panopticapi-lite==0.2.0'],
        # ftfy/regex: mmseg's text models, imported by mmseg.utils (register_all_modules)
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        # transformers < 4.52: mmpretrain 1.2.0 imports names that 4.52 removed (and mmdet.models
        # imports mmpretrain when it is installed); tools/setup_env.sh pins the same
        'cls': ['mmpretrain==1.2.0', 'transformers>=4.28,<4.52'],
        # openmim 0.3.9 itself: pip install --no-deps openmim==0.3.9 (its declared opendatalab
        # dependency, never imported, would downgrade setuptools, requests and rich)
        'mim': ['click', 'colorama', 'model-index', 'pandas<3', 'requests', 'rich', 'tabulate'],
        'tests': ['pytest', 'pytest-timeout', 'pytest-xdist', 'timm', 'onnx==1.23.2', 'onnxruntime==1.32.0',
                  'transformers>=4.28,<4.52'],
        'lint': ['ruff==0.16.9'],
        # tools/deploy.py: ONNX export with MMDeploy and ONNX Runtime (CPU). mmdeploy itself is not
        # listed: its metadata asks for protobuf<=3.20.2, which onnx 1.23 (protobuf>=6.31) refuses; install
        # it with `pip install --no-deps mmdeploy==1.3.1` (tools/setup_env.sh does both)
        'deploy': ['onnx==1.23.2', 'onnxruntime==1.32.0', 'aenum==3.1.17', 'multiprocess==0.70.19',
                   'dill==0.4.1'],
    },
    entry_points={'console_scripts': [
        'focalnet-download-weights = focalnet_mm.weights.download:main']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
