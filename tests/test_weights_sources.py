"""``focalnet://<preset>`` short names: sources in order, cache, offline folder, hash, failures.

A local HTTP server on 127.0.0.1 serves synthetic checkpoints in the official, timm (safetensors)
and HF transformers layouts; the sources table is pointed at it with monkeypatch, never at the
network.
"""
import glob
import hashlib
import io
import logging
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save as save_safetensors

import focalnet_mm  # noqa: F401  (registers focalnet:// with mmengine)
from focalnet_mm import ARCHS, FocalNet
from focalnet_mm.weights import io as weights_io
from focalnet_mm.weights import sources as S
from focalnet_mm.weights.formats import timm_to_official

from conftest import REPO_ROOT, free_port, load_tool

timm = pytest.importorskip('timm')
from timm.models.focalnet import FocalNet as TimmFocalNet  # noqa: E402

TINY = dict(embed_dim=16, depths=(1, 1, 2, 1), focal_levels=3, focal_windows=3)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A fresh cache per test; no offline folder from the environment."""
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path / 'cache'))
    monkeypatch.delenv(S.OFFLINE_ENV, raising=False)


@pytest.fixture(scope='module')
def net():
    torch.manual_seed(0)
    return TimmFocalNet(embed_dim=16, depths=(1, 1, 2, 1), focal_levels=(3, ) * 4,
                        focal_windows=(3, ) * 4, num_classes=10).eval()


def official_bytes(net):
    buffer = io.BytesIO()
    torch.save({'model': timm_to_official(net.state_dict())}, buffer)
    return buffer.getvalue()


def timm_bytes(net, scale=1.0):
    return save_safetensors({k: (v * scale).contiguous() for k, v in net.state_dict().items()})


def hf_bytes():
    transformers = pytest.importorskip('transformers')
    config = transformers.FocalNetConfig(embed_dim=16, depths=[1, 1, 2, 1], focal_levels=[3] * 4,
                                         focal_windows=[3] * 4, num_labels=10)
    hf = transformers.FocalNetForImageClassification(config)
    buffer = io.BytesIO()
    torch.save(hf.state_dict(), buffer)
    return buffer.getvalue(), hf


def hub_path(repo, file='model.safetensors'):
    return f'/{repo}/resolve/main/{file}'


def build(checkpoint='focalnet://tiny_lrf', **init):
    model = FocalNet(arch=TINY, drop_path_rate=0.,
                     init_cfg=dict(type='Pretrained', checkpoint=checkpoint, **init))
    model.init_weights()
    return model


def sha(data):
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------- the table
def test_table_covers_every_preset_with_live_https_sources():
    assert set(S.WEIGHT_SOURCES) == set(ARCHS)
    paths = []
    for preset, sources in S.WEIGHT_SOURCES.items():
        assert sources or preset in S.UNOBTAINABLE, preset
        for source in sources:
            assert source.url.startswith('https://') and S.DEAD_HOST not in source.url
            assert source.format in ('official', 'timm', 'hf')
            assert source.sha256 is None or re.fullmatch(r'[0-9a-f]{64}', source.sha256)
            paths.append(S.relative_path(preset, source))
    assert len(paths) == len(set(paths))  # no two sources share a cache file
    # the official file first wherever the GitHub release has it
    assert S.WEIGHT_SOURCES['tiny_lrf'][0].url.endswith('/v1.0.0/focalnet_tiny_lrf.pth')


def test_mmengine_scheme_is_registered_and_unknown_preset_names_the_choices():
    from mmengine.runner import CheckpointLoader
    assert CheckpointLoader._get_checkpoint_loader('focalnet://tiny_lrf') is weights_io.load_from_focalnet
    with pytest.raises(ValueError, match=r"Unknown FocalNet weights 'focalnet://tiny'.*tiny_lrf"):
        S.fetch_weights('focalnet://tiny')


# --------------------------------------------------------------------------- acceptance
def test_409_falls_through_to_next_source_and_loads(server, net, monkeypatch, caplog):
    dead = server.add('/focalnet/release/focalnet_tiny_lrf.pth', b'PublicAccessNotPermitted', 409)
    hub = server.add(hub_path('timm/focalnet_tiny_lrf.ms_in1k'), timm_bytes(net))
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(dead, 'official'),
                                                       S.Source(hub, 'timm')))
    model = build()
    # the timm file went through the format converter: the stem is timm's
    assert torch.equal(model.patch_embed.proj.weight, net.stem.proj.weight)
    assert server.requests == ['/focalnet/release/focalnet_tiny_lrf.pth',
                               hub_path('timm/focalnet_tiny_lrf.ms_in1k')]


@pytest.fixture
def mm_log():
    """The messages logged through mmengine's current logger during the test."""
    from mmengine.logging import MMLogger
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger, handler = MMLogger.get_current_instance(), Collect()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def test_one_log_line_names_the_source_used(server, net, monkeypatch, mm_log):
    hub = server.add(hub_path('timm/x'), timm_bytes(net))
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(hub, 'timm'), ))
    S.fetch_weights('focalnet://tiny_lrf', progress=False)
    used = [r for r in mm_log if r.startswith('focalnet://tiny_lrf: using')]
    assert len(used) == 1 and hub in used[0] and '\n' not in used[0]


def test_hash_mismatch_is_refused_and_the_file_removed(server, net, monkeypatch):
    body = official_bytes(net)
    url = server.add('/release/focalnet_tiny_lrf.pth', body)
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'official', '0' * 64), ))
    with pytest.raises(S.WeightsHashError) as error:
        build()
    message = str(error.value)
    assert '\n' not in message and '0' * 64 in message and sha(body) in message
    assert 'file removed' in message
    assert not glob.glob(osp.join(S.cache_root(), '**', '*.pth'), recursive=True)
    # the right digest passes
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'official', sha(body)), ))
    assert torch.equal(build().patch_embed.proj.weight, net.stem.proj.weight)


def test_second_build_does_not_download_again(server, net, monkeypatch):
    from mmengine.runner import load_checkpoint
    url = server.add('/release/focalnet_tiny_lrf.pth', official_bytes(net))
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'official'), ))
    first = build()  # init_cfg Pretrained
    second = FocalNet(arch=TINY, pretrained='focalnet://tiny_lrf')  # pretrained=
    second.init_weights()
    third = FocalNet(arch=TINY)  # mmengine's load_checkpoint, as load_from does
    load_checkpoint(third, 'focalnet://tiny_lrf', map_location='cpu')
    assert server.count('/release/focalnet_tiny_lrf.pth') == 1
    for model in (second, third):
        assert torch.equal(model.layers[2].blocks[1].modulation.f.weight,
                           first.layers[2].blocks[1].modulation.f.weight)


def test_two_hub_files_named_model_safetensors_do_not_overwrite_each_other(server, net,
                                                                            monkeypatch):
    a = server.add(hub_path('timm/focalnet_tiny_srf.ms_in1k'), timm_bytes(net, 1.0))
    b = server.add(hub_path('timm/focalnet_tiny_lrf.ms_in1k'), timm_bytes(net, 2.0))
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_srf', (S.Source(a, 'timm'), ))
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(b, 'timm'), ))
    path_a = S.fetch_weights('focalnet://tiny_srf', progress=False)
    path_b = S.fetch_weights('focalnet://tiny_lrf', progress=False)
    assert path_a != path_b and osp.basename(path_a).endswith('model.safetensors')
    assert open(path_a, 'rb').read() == server.body(hub_path('timm/focalnet_tiny_srf.ms_in1k'))
    assert open(path_b, 'rb').read() == server.body(hub_path('timm/focalnet_tiny_lrf.ms_in1k'))
    # same preset, two repos, one file name: still two files
    assert S.file_name(a) != S.file_name(b)


def test_download_tool_fills_a_folder_and_the_offline_folder_wins_without_any_request(
        server, net, monkeypatch, tmp_path, capsys, repo_root):
    download_weights = load_tool('tools/download_weights.py')
    url = server.add('/release/focalnet_tiny_lrf.pth', official_bytes(net))
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'official'), ))
    folder = tmp_path / 'offline'
    argv = ['focalnet://tiny_lrf', '--dir', str(folder), '--no-progress']
    assert download_weights.main(argv) == 0
    out = capsys.readouterr().out
    assert f'export {S.OFFLINE_ENV}={folder}' in out and 'fetched focalnet://tiny_lrf' in out
    assert server.count('/release/focalnet_tiny_lrf.pth') == 1
    # another machine: empty cache, the folder in the environment, no request at all
    monkeypatch.setenv(S.CACHE_ENV, str(tmp_path / 'other_cache'))
    monkeypatch.setenv(S.OFFLINE_ENV, str(folder))
    server.requests.clear()
    assert torch.equal(build().patch_embed.proj.weight, net.stem.proj.weight)
    # the official file dropped in as it is named upstream; and the config option weights_dir
    monkeypatch.delenv(S.OFFLINE_ENV)
    plain = tmp_path / 'plain'
    plain.mkdir()
    (plain / 'focalnet_tiny_lrf.pth').write_bytes(official_bytes(net))
    assert torch.equal(build(weights_dir=str(plain)).patch_embed.proj.weight, net.stem.proj.weight)
    assert server.requests == []


def test_failed_download_leaves_no_empty_folders(server, monkeypatch, tmp_path, capsys):
    download_weights = load_tool('tools/download_weights.py')
    url = server.add('/release/focalnet_tiny_lrf.pth', b'PublicAccessNotPermitted', 409)
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'official'), ))
    (tmp_path / 'keep').mkdir()
    for folder in (tmp_path / 'new' / 'weights', tmp_path / 'keep'):
        assert download_weights.main(['tiny_lrf', '--dir', str(folder), '--no-progress']) == 1
        assert 'HTTP 409' in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ['keep']  # 'new/weights' removed again
    assert list((tmp_path / 'keep').iterdir()) == []  # no <preset>/ folder left in an existing one


def test_all_sources_failed_names_every_url_and_how_to_pass_a_file(server, monkeypatch):
    a = server.add('/release/focalnet_tiny_lrf.pth', b'PublicAccessNotPermitted', 409)
    b = server.base + hub_path('timm/focalnet_tiny_lrf.ms_in1k')  # 404
    closed = 'http://127.0.0.1:9/nothing.bin'  # discard port: connection refused
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', tuple(
        S.Source(u, f) for u, f in ((a, 'official'), (b, 'timm'), (closed, 'hf'))))
    with pytest.raises(S.WeightsUnavailableError) as error:
        build()  # never random weights
    message = str(error.value)
    assert '\n' not in message
    assert f'{a} (HTTP 409' in message and f'{b} (HTTP 404' in message and f'{closed} (' in message
    assert 'checkpoint=/path/to/file' in message and S.OFFLINE_ENV in message
    assert 'focalnet-download-weights tiny_lrf --dir DIR' in message


def test_the_loaders_own_error_names_how_to_train_without_weights(monkeypatch):
    """Not only our tools: the error itself (the last line of the traceback under mmdet's or
    mmseg's own train.py) names the offline folder, the download command and how to train
    without pretrained weights, from init_cfg Pretrained and from mmengine's load_checkpoint."""
    from mmengine.runner import load_checkpoint
    closed = 'http://127.0.0.1:9/focalnet_tiny_lrf.pth'  # discard port: connection refused
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(closed, 'official'), ))
    without = ('To train without pretrained weights instead: pretrained = None in the custom '
               'templates, otherwise --cfg-options model.backbone.init_cfg=None')
    for load in (build, lambda: load_checkpoint(FocalNet(arch=TINY), 'focalnet://tiny_lrf')):
        with pytest.raises(S.WeightsUnavailableError) as error:
            load()
        message = str(error.value)
        assert '\n' not in message and message.endswith(without)
        assert 'focalnet-download-weights tiny_lrf --dir DIR' in message and S.OFFLINE_ENV in message
    with pytest.raises(S.WeightsUnavailableError) as error:  # a preset nobody republished
        S.fetch_weights('focalnet://tiny_iso')
    assert str(error.value).endswith(without)


def test_unobtainable_preset_says_why_in_one_line_and_takes_a_local_copy(tmp_path, monkeypatch):
    with pytest.raises(S.WeightsUnavailableError, match=r'focalnet://tiny_iso: .*#43') as error:
        S.fetch_weights('focalnet://tiny_iso')
    assert '\n' not in str(error.value) and 'focalnet_tiny_iso_16.pth' in str(error.value)
    (tmp_path / 'focalnet_tiny_iso_16.pth').write_bytes(b'x')  # an old copy of the official file
    monkeypatch.setenv(S.OFFLINE_ENV, str(tmp_path))
    assert S.fetch_weights('focalnet://tiny_iso') == str(tmp_path / 'focalnet_tiny_iso_16.pth')


def test_hf_layout_source_loads(server, monkeypatch):
    body, hf = hf_bytes()
    url = server.add(hub_path('microsoft/focalnet-tiny-lrf', 'pytorch_model.bin'), body)
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'hf'), ))
    model = build()
    assert torch.equal(model.patch_embed.proj.weight,
                       hf.focalnet.embeddings.patch_embeddings.projection.weight)


def test_mmengine_load_checkpoint_reads_short_names_in_official_layout(server, net, monkeypatch):
    from mmengine.runner import CheckpointLoader
    url = server.add(hub_path('timm/focalnet_tiny_lrf.ms_in1k'), timm_bytes(net))
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'timm'), ))
    state = CheckpointLoader.load_checkpoint('focalnet://tiny_lrf', map_location='cpu')
    assert torch.equal(state['patch_embed.proj.weight'], net.stem.proj.weight)
    assert 'layers.0.downsample.proj.weight' in state  # timm's layers.1.downsample, renamed


# --------------------------------------------------------------------------- what servers answer
def cache_files():
    return sorted(glob.glob(osp.join(S.cache_root(), '**', '*'), recursive=True))


def test_redirects_of_the_release_and_the_hub_are_followed(server, net):
    """GitHub answers a release asset with 302 to its object store, the hub answers 302 to its
    CDN; the file is cached under the name of the URL asked for, not of the redirect."""
    body, safetensors = official_bytes(net), timm_bytes(net)
    server.add('/objects/release-asset-1', body)
    server.add('/cdn-lfs/sha256-abc', safetensors)
    release = server.redirect('/release/focalnet_tiny_lrf.pth', server.base + '/objects/release-asset-1')
    hub = server.redirect(hub_path('timm/focalnet_tiny_lrf.ms_in1k'), '/cdn-lfs/sha256-abc')  # relative
    for url, fmt, expected in ((release, 'official', body), (hub, 'timm', safetensors)):
        path = S.fetch_weights('focalnet://tiny_lrf', sources=[S.Source(url, fmt)], progress=False)
        assert path.endswith(S.file_name(url)) and open(path, 'rb').read() == expected
    assert server.requests == ['/release/focalnet_tiny_lrf.pth', '/objects/release-asset-1',
                               hub_path('timm/focalnet_tiny_lrf.ms_in1k'), '/cdn-lfs/sha256-abc']


@pytest.mark.parametrize('layout', ['official', 'timm'])
def test_a_body_cut_short_is_not_cached_and_the_next_source_is_used(server, net, layout):
    body = official_bytes(net) if layout == 'official' else timm_bytes(net)
    cut = server.add('/release/cut.pth', body[:len(body) // 2], length=len(body))  # connection lost
    good = server.add(hub_path('timm/focalnet_tiny_lrf.ms_in1k'), timm_bytes(net))
    path = S.fetch_weights('focalnet://tiny_lrf', progress=False,
                           sources=[S.Source(cut, layout), S.Source(good, 'timm')])
    assert cache_files() == [osp.dirname(path), path] and path.endswith('model.safetensors')
    with pytest.raises(S.WeightsUnavailableError) as error:
        S.fetch_weights('focalnet://tiny_srf', sources=[S.Source(cut, layout)], progress=False)
    message = str(error.value)
    assert '\n' not in message
    assert f'{cut} (DownloadError: body cut short: {len(body) // 2} of the {len(body)} bytes' in message
    # no partial or temporary file, and not even the empty folder made for it
    assert not osp.exists(osp.join(S.cache_root(), 'tiny_srf'))


def test_a_file_whose_own_header_says_it_is_cut_is_refused(server, net):
    """No Content-Length to compare with (the server closes the connection): the file's own
    structure says it is incomplete (a zip without its end, a safetensors file shorter than
    its header)."""
    for name, body in (('a.pth', official_bytes(net)), ('b.safetensors', timm_bytes(net))):
        url = server.add(f'/{name}', body[:-100])  # Content-Length of what is sent: consistent
        with pytest.raises(S.WeightsUnavailableError, match=r'cut short or damaged') as error:
            S.fetch_weights('focalnet://tiny_lrf', sources=[S.Source(url, 'official')],
                            progress=False)
        assert '\n' not in str(error.value) and url in str(error.value)
    assert [f for f in cache_files() if osp.isfile(f)] == []


@pytest.mark.parametrize('content_type', ['text/html; charset=utf-8', 'application/octet-stream'])
def test_an_html_page_answered_with_200_is_never_cached_as_the_checkpoint(server, content_type,
                                                                         monkeypatch):
    """A sign-in / error page served with status 200 (labelled as HTML, or not)."""
    page = b'<!DOCTYPE html>\n<html><body>Sign in to continue</body></html>'
    url = server.add(hub_path('timm/focalnet_tiny_lrf.ms_in1k'), page,
                     headers={'Content-Type': content_type})
    monkeypatch.setitem(S.WEIGHT_SOURCES, 'tiny_lrf', (S.Source(url, 'timm'), ))
    with pytest.raises(S.WeightsUnavailableError) as error:
        build()
    message = str(error.value)
    assert '\n' not in message and f'{url} (DownloadError: answered ' in message
    assert 'HTML page' in message and 'checkpoint=/path/to/file' in message
    assert [f for f in cache_files() if osp.isfile(f)] == []


@pytest.mark.parametrize('damage', ['cut', 'replaced'])
def test_a_stale_cached_file_is_removed_and_downloaded_again(server, net, damage, mm_log):
    """The cache is ours: a cached file that no longer matches its sha256 (when the table has
    one) or is not a whole checkpoint is replaced by a fresh download, with one warning."""
    body = official_bytes(net)
    url = server.add('/release/focalnet_tiny_lrf.pth', body)
    source = S.Source(url, 'official', sha(body) if damage == 'replaced' else None)
    path = S.fetch_weights('focalnet://tiny_lrf', sources=[source], progress=False)
    with open(path, 'wb') as f:  # cut by an older downloader / another valid file put there
        f.write(body[:len(body) // 3] if damage == 'cut' else timm_bytes(net))
    assert S.fetch_weights('focalnet://tiny_lrf', sources=[source], progress=False) == path
    assert open(path, 'rb').read() == body and server.count('/release/focalnet_tiny_lrf.pth') == 2
    warned = [r for r in mm_log if 'removed the cached' in r]
    reason = 'sha256 ' if damage == 'replaced' else 'cut short or damaged'
    assert len(warned) == 1 and reason in warned[0] and warned[0].endswith('downloading it again')
    # the source now serves other bytes than its recorded sha256: refused in one line, not kept
    server.add('/release/focalnet_tiny_lrf.pth', timm_bytes(net))
    os.remove(path)
    if damage == 'replaced':
        with pytest.raises(S.WeightsHashError, match=r'file removed') as error:
            S.fetch_weights('focalnet://tiny_lrf', sources=[source], progress=False)
        assert '\n' not in str(error.value) and not osp.exists(path)


SHARING_RANK = """
import sys
import torch.distributed as dist
dist.init_process_group('gloo')
from focalnet_mm.weights import sources as S
path = S.fetch_weights('focalnet://tiny_lrf', sources=[S.Source({url!r}, 'official')],
                       progress=False)
print('RESULT', path, S.sha256_of(path), flush=True)
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_share_the_cache_one_downloads_the_other_waits(server, net, tmp_path):
    """Two real ranks (gloo) on one machine: local rank 0 downloads (the server takes 2 s to send
    the body), local rank 1 waits at the barrier and reads the same complete file."""
    body = official_bytes(net)
    url = server.add('/release/focalnet_tiny_lrf.pth', body, delay=2.0)
    port = free_port()
    ranks = [subprocess.Popen(
        [sys.executable, '-c', SHARING_RANK.format(url=url)], cwd=REPO_ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS='1', MASTER_ADDR='127.0.0.1',
                 MASTER_PORT=str(port), WORLD_SIZE='2', RANK=str(rank), LOCAL_RANK=str(rank),
                 **{S.CACHE_ENV: str(tmp_path / 'shared_cache')}))
        for rank in range(2)]
    try:
        outputs = [proc.communicate(timeout=240)[0] for proc in ranks]
    finally:
        for proc in ranks:
            proc.kill()
    assert [proc.returncode for proc in ranks] == [0, 0], outputs
    results = [re.search(r'^RESULT (\S+) (\w+)$', out, re.M) for out in outputs]
    assert all(results), outputs
    expected = str(tmp_path / 'shared_cache' / S.relative_path('tiny_lrf', S.Source(url, 'official')))
    assert [r.groups() for r in results] == [(expected, sha(body))] * 2
    assert server.count('/release/focalnet_tiny_lrf.pth') == 1


# --------------------------------------------------------------------------- configs & docs
def test_no_config_checkpoint_points_at_the_dead_storage(repo_root):
    from mmengine.config import Config
    files = sorted(glob.glob(osp.join(repo_root, 'configs', '**', '*.py'), recursive=True))
    assert len(files) >= 40
    for path in files:
        assert S.DEAD_HOST not in open(path).read(), path
    named = re.compile(r"focalnet://(\w+)")
    for path in files:  # every short name used is a preset with a source
        for preset in named.findall(open(path).read()):
            assert preset in S.WEIGHT_SOURCES, (path, preset)

    def checkpoints(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ('checkpoint', 'pretrained', 'load_from') and isinstance(value, str):
                    yield value
                yield from checkpoints(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                yield from checkpoints(value)

    # the merged configs (mmdet / mmseg / mmpretrain bases included) of the FocalNet families
    for name in ('det/maskrcnn_focalnet_t_lrf_3x.py', 'cls/focalnet_t_srf_in1k_finetune.py',
                 'seg/upernet_focalnet_t_lrf_512x512_160k_ade20k.py'):
        cfg = Config.fromfile(osp.join(repo_root, 'configs', name))
        found = list(checkpoints(cfg.to_dict()))
        assert found and all(S.DEAD_HOST not in c for c in found), found
        assert any(c.startswith(S.SCHEME) for c in found), found


def test_docs_and_metafile_link_no_dead_storage(repo_root):
    for name in ('README.md', 'metafile.yml', *glob.glob(osp.join(repo_root, 'docs', '*.md'))):
        text = open(osp.join(repo_root, name)).read()
        assert S.DEAD_HOST + '/focalnet/release' not in text, name


# --------------------------------------------------------------------------- tools

def test_converter_takes_short_names(net, tmp_path, monkeypatch, repo_root):
    tool = load_tool('tools/model_converters/focalnet2mm.py')
    (tmp_path / 'focalnet_tiny_lrf.pth').write_bytes(official_bytes(net))
    monkeypatch.setenv(S.OFFLINE_ENV, str(tmp_path))
    out, _ = tool.convert(tool.parse_args(['focalnet://tiny_lrf', str(tmp_path / 'o.pth'),
                                           '--no-hash']))
    written = torch.load(out, weights_only=True)['model']
    assert torch.equal(written['patch_embed.proj.weight'], net.stem.proj.weight)


def test_infer_weights_takes_short_names(tmp_path, monkeypatch, repo_root):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    infer = load_tool('tools/infer.py')
    config = osp.join(repo_root, 'configs', 'cls', 'focalnet_t_srf_in1k.py')
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        classifier = MODELS.build(cfg.model)
    state = {k: v for k, v in classifier.backbone.state_dict().items()
             if not k.startswith('norm3.')}
    state.update({'norm.weight': torch.rand(768), 'norm.bias': torch.rand(768),
                  'head.weight': torch.randn(1000, 768), 'head.bias': torch.randn(1000)})
    torch.save({'model': state}, tmp_path / 'focalnet_tiny_srf.pth')  # the official file's name
    monkeypatch.setenv(S.OFFLINE_ENV, str(tmp_path))
    scope, inferencer = infer.build_inferencer(config, 'focalnet://tiny_srf', 'cpu')
    assert scope == 'mmpretrain'
    assert torch.equal(inferencer.model.head.fc.weight, state['head.weight'])


def test_plain_hub_urls_named_model_safetensors_do_not_collide(server, net, tmp_path):
    from focalnet_mm.weights.download import download_checkpoint
    a = server.add(hub_path('timm/a'), timm_bytes(net, 1.0))
    b = server.add(hub_path('timm/b'), timm_bytes(net, 2.0))
    path_a, path_b = (download_checkpoint(u, model_dir=str(tmp_path)) for u in (a, b))
    assert path_a != path_b
    assert open(path_b, 'rb').read() == server.body(hub_path('timm/b'))
