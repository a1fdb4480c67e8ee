"""focalnet-mm: the FocalNet backbone as a plugin for MMDetection, MMSegmentation and MMPretrain.

torch and mmcv are not declared: pip cannot build mmcv's compiled ops by itself. Use
``bash tools/setup_env.sh`` (see README) to get the whole stack, or install into an environment
that already has torch + mmcv 2.1.0: ``pip install "focalnet-mm[det,seg,mim]"`` (which keeps the
numpy, OpenCV and other packages already there: tests/test_packaging.py).

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
        # pkg_resources is imported by mmengine 0.10.7 when mmdet's / mmseg's own tools read
        # mmdet::/mmseg:: bases, and by openmim at start (then reloaded per lookup). setuptools 82
        # removed it; 80.9-81 print "pkg_resources is deprecated ... pin to Setuptools<81" at
        # each import (2-4 times per mim command; 80.9 as well, despite the text). 80.8 is the
        # last release without the warning, and torch 2.14 asks for >= 77.0.3
        'setuptools<80.9',
        # numpy 2 works with this stack (README "Use it in your own project"); no upper bound, so
        # a user's numpy and opencv are kept
        'numpy',
        'safetensors',
        'tqdm',
        'matplotlib',
    ],
    extras_require={
        # the libraries declare the rest of what they need (pycocotools, scipy, ...). mmdet's
        # CocoPanopticMetric (the COCO panoptic Mask2Former configs) also imports `panopticapi`
        # (cocodataset/panopticapi, not on PyPI under that name); its PyPI copy panopticapi-lite
        # 0.2.0 declares numpy<2 and scikit-image but imports only numpy, Pillow and pycocotools,
        # so it is not an extra (an extra would downgrade numpy 2): README and docs/installation.md
        # install it with --no-deps
        'det': ['mmdet==3.3.0'],
        # ftfy/regex: mmseg's text models, imported by mmseg.utils (register_all_modules)
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        # transformers < 4.52: mmpretrain 1.2.0 imports names that 4.52 removed (and mmdet.models
        # imports mmpretrain when it is installed); tools/setup_env.sh pins the same
        'cls': ['mmpretrain==1.2.0', 'transformers>=4.28,<4.52'],
        # the `mim` command. openmim 0.3.8, not 0.3.9: 0.3.9 differs only by `mim download
        # --dataset`, and declares opendatalab for it, whose openxlab dependency pins old
        # setuptools (~=60.2), requests, rich, packaging, filelock and tqdm (pip then reports it missing
        # or downgrades them)
        'mim': ['openmim==0.3.8'],
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
        # every tool shipped in focalnet_mm/.mim/tools: `focalnet-mm TOOL ARGS` (focalnet_mm/commands.py)
        'focalnet-mm = focalnet_mm.commands:main',
        'focalnet-download-weights = focalnet_mm.commands:download_weights']},
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
