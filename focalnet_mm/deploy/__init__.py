"""Deployment: a trained detector, segmentor or classifier -> ``end2end.onnx`` -> ONNX Runtime."""
from .export import *  # noqa: F401,F403  (split into export / backend / rewriters next)
from .export import _post_processing  # noqa: F401
