"""focalnet-mm: the FocalNet backbone as a plugin for MMDetection, MMSegmentation and MMPretrain.

torch and mmcv are not declared: pip cannot build mmcv's compiled ops by itself. Use
``bash tools/setup_env.sh`` (see README) to get the whole stack; ``pip install -e .`` then works
inside that environment.
"""
import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'focalnet_mm', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='focalnet-mm',
    version=read_version(),
    description='FocalNet (Focal Modulation Networks) backbone for OpenMMLab 2.x',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['focalnet_mm', 'focalnet_mm.*']),
    python_requires='>=3.9,<3.13',
    install_requires=[
        'mmengine==0.10.7',
        'numpy<2',
        'safetensors',
        'tqdm',
        'matplotlib',
    ],
    extras_require={
        'det': ['mmdet==3.3.0', 'pycocotools'],
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        'cls': ['mmpretrain==1.2.0'],
        # transformers: the converter's HF checks; < 4.52 because mmpretrain 1.2.0 imports names
        # that 4.52 removed (tools/setup_env.sh pins the same)
        'tests': ['pytest', 'pytest-timeout', 'pytest-xdist', 'timm', 'onnx==1.23.2',
                  'transformers>=4.28,<4.52'],
        'lint': ['ruff==0.16.9'],
        # tools/deploy.py: ONNX export with MMDeploy and ONNX Runtime (CPU). mmdeploy itself is not
        # listed: its metadata asks for protobuf<=3.20.2, which onnx 1.23 (protobuf>=6.31) refuses; install
        # it with `pip install --no-deps mmdeploy==1.3.1` (tools/setup_env.sh does both)
        'deploy': ['onnx==1.23.2', 'onnxruntime==1.32.0', 'aenum==3.1.17', 'multiprocess==0.70.19',
                   'dill==0.4.1'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
)
