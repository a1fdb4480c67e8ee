"""The MMPretrain classifiers of configs/cls compute timm's FocalNet classification function.

Same random weights in both: the classifier's backbone + head are written out in the official
classification layout (``norm{last}`` -> ``norm``, ``head.fc`` -> ``head``) and read into timm
with timm's own ``checkpoint_filter_fn``; logits must agree to 1e-5 relative.
"""
import os.path as osp

import pytest
import torch

import focalnet_mm  # noqa: F401  (registers FocalNet)
from focalnet_mm.archs import TIMM_NAMES

timm = pytest.importorskip('timm')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmpretrain.registry import MODELS  # noqa: E402
from timm.models.focalnet import checkpoint_filter_fn  # noqa: E402

from conftest import REPO_ROOT, sweep  # noqa: E402
from meta_build import on_meta  # noqa: E402

#: config -> (arch, image side): T at its 224, the deeper S/B at 160, the 200M-parameter L at 96
CASES = {
    'focalnet_t_srf_in1k.py': ('tiny_srf', 224),
    'focalnet_t_lrf_in1k.py': ('tiny_lrf', 224),
    'focalnet_s_srf_in1k.py': ('small_srf', 160),
    'focalnet_s_lrf_in1k.py': ('small_lrf', 160),
    'focalnet_b_srf_in1k.py': ('base_srf', 160),
    'focalnet_b_lrf_in1k.py': ('base_lrf', 160),
    'focalnet_l_fl3_in22k_384.py': ('large_fl3', 96),
}


@pytest.fixture(autouse=True)
def mmpretrain_scope():
    """mmpretrain's default scope for each test, the previous one restored after: another
    module's scope (mmseg, mmdet) must not decide where ``ImageClassifier`` is looked up."""
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


def build_classifier(config_name):
    """The config's classifier, built on the meta device and materialised without PyTorch's
    initialisation (seconds for L): ``randomize_`` sets every value. Norm weights start at 1 and
    every other 1-d parameter at 0, then ``randomize_`` perturbs them; larger ones it overwrites."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', 'cls', config_name))
    with on_meta():
        model = MODELS.build(cfg.model)
    model.to_empty(device='cpu')
    assert not list(model.buffers())  # nothing that randomize_ would leave uninitialised
    with torch.no_grad():
        for module in model.modules():
            for name, param in module.named_parameters(recurse=False):
                if param.dim() == 1:
                    is_norm_weight = isinstance(module, torch.nn.LayerNorm) and name == 'weight'
                    param.fill_(1.0 if is_norm_weight else 0.0)
    return model.eval()


def randomize_(model, seed=0):
    """Make every parameter matter: perturb norms/biases, layerscale gammas well away from 1e-4.
    (Drawn in place: for L no temporary copy of 200M values.)"""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if 'gamma' in name:
                param.normal_(0.5, 0.2, generator=gen)
            elif param.dim() == 1:
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
            else:
                param.normal_(0.0, 0.02, generator=gen)


def official_state_dict(classifier):
    """The classifier's weights in the layout of the official classification files (the same
    tensors, not copies: neither model changes them, and L's 200M values are not copied)."""
    last = f'norm{classifier.backbone.out_indices[-1]}.'
    state = {}
    for key, value in classifier.backbone.state_dict().items():
        state['norm.' + key[len(last):] if key.startswith(last) else key] = value
    state['head.weight'] = classifier.head.fc.weight.detach()
    state['head.bias'] = classifier.head.fc.bias.detach()
    return state


def timm_model_from_official(arch, state, num_classes):
    """timm's model holding ``state`` (built on the meta device: its own init would be discarded)."""
    with on_meta():
        model = timm.create_model(TIMM_NAMES[arch], pretrained=False, num_classes=num_classes)
    model.load_state_dict(checkpoint_filter_fn({'model': state}, model), strict=True, assign=True)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    return model.eval()


def relative_error(actual, expected):
    return ((actual - expected).abs().max() / expected.abs().max()).item()


#: the quick loop: T (the head and the official layout); S and B repeat it at other depths and
#: widths, L adds the 22k head and the large flags (whole suite; the flags are in the quick loop
#: of test_backbone_equivalence)
QUICK = ('focalnet_t_srf_in1k.py', )


@pytest.mark.parametrize('config_name', sweep(CASES, QUICK))
def test_classifier_logits_match_timm(config_name):
    arch, side = CASES[config_name]
    classifier = build_classifier(config_name)
    assert classifier.backbone.arch == arch
    randomize_(classifier)
    num_classes = classifier.head.num_classes
    reference = timm_model_from_official(arch, official_state_dict(classifier), num_classes)
    # the official file layout has exactly the parameters of the classifier (no extra, no lost)
    assert sum(p.numel() for p in reference.parameters()) == \
        sum(p.numel() for p in classifier.parameters())

    images = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = classifier(images, mode='tensor')
        expected = reference(images)
    del classifier, reference
    assert logits.shape == (2, num_classes)
    assert expected.abs().max() > 1e-2  # a meaningful comparison, not two near-zero outputs
    assert relative_error(logits, expected) <= 1e-5
    assert torch.equal(logits.argmax(1), expected.argmax(1))
