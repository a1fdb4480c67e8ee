#!/usr/bin/env bash
# One-command environment for focalnet-mm: creates .venv and installs torch, mmcv 2.1.0 with its
# compiled ops, mmengine / mmdet / mmseg / mmpretrain, timm and this package (editable).
# Idempotent: every stage checks what is already there, and the built mmcv wheel is cached, so a
# second run takes seconds.
#
# Environment knobs (all optional):
#   FOCALNET_VENV        virtual environment to create/use        (default: <repo>/.venv)
#   FOCALNET_CACHE       cache for built mmcv wheels and sdists   (default: ~/.cache/focalnet-mm)
#   FOCALNET_WHEELS      extra folder of prebuilt wheels laid out as torch-<version>/*.whl
#                        (default: <repo>/../shared/wheels when it exists)
#   TORCH_VERSION / TORCHVISION_VERSION   pair installed when the venv has no working torch
#                        (default 2.14.1 / 0.29.1). Install your own CUDA torch into the venv
#                        first to keep it: a working torch + torchvision pair is never replaced.
#   MAX_JOBS             parallel compile jobs for mmcv (default: number of cores)
#   FORCE_CUDA=1         build mmcv's CUDA ops (needs nvcc matching torch's CUDA)
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FOCALNET_VENV:-$ROOT/.venv}"
CACHE="${FOCALNET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/focalnet-mm}"
EXTRA_WHEELS="${FOCALNET_WHEELS:-$ROOT/../shared/wheels}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"
MMCV_VERSION=2.1.0
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

T0=$SECONDS
STAGE="start"
HINT="re-run 'bash tools/setup_env.sh'"
stage() {  # stage NAME HINT-ON-FAILURE
  STAGE="$1"; HINT="$2"
  printf '[setup_env %4ds] %s\n' "$((SECONDS - T0))" "$STAGE"
}
on_exit() {
  local rc=$?
  [ "$rc" = 0 ] || printf '[setup_env %4ds] FAILED during "%s": %s\n' "$((SECONDS - T0))" "$STAGE" "$HINT" >&2
}
trap on_exit EXIT

stage "python: checking interpreter" "install Python 3.9-3.12 with venv support (Debian: apt-get install python3-venv) and re-run"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; assert (3, 9) <= sys.version_info[:2] <= (3, 12), sys.version' >/dev/null

if [ ! -x "$VENV/bin/python" ]; then
  stage "venv: creating $VENV" "delete $VENV and re-run; check that 'python3 -m venv' works"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() {  # quiet pip; drops the noise of find-links folders that some machines configure
  "$PY" -m pip install -q "$@" 2> >(grep -v "^WARNING: Location .* is ignored" >&2)
}
PIP=(pip_install)

has() { (cd / && "$PY" -c "$1" >/dev/null 2>&1); }  # from / so the source tree does not shadow installs

# Each check below is one interpreter start (torch alone takes seconds to import), or reads pip's
# metadata without importing anything, so a run in a complete environment stays short.
# satisfied REQUIREMENT... -> 0 when each distribution is installed at a version the requirement allows
satisfied() {
  (cd / && "$PY" - "$@" >/dev/null 2>&1) <<'EOF'
import sys
from importlib.metadata import version
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
for requirement in map(Requirement, sys.argv[1:]):
    assert requirement.specifier.contains(version(requirement.name), prereleases=True), requirement
EOF
}
# torch_info -> "TORCH_VERSION TORCHVISION_VERSION" when the pair works (torchvision's compiled nms),
# then "mmcv VERSION" when mmcv's compiled ops load too: one interpreter start checks both
torch_info() {
  (cd / && "$PY" -c '
import torch, torchvision, torchvision.ops
torchvision.ops.nms
print(torch.__version__, torchvision.__version__, flush=True)
try:
    import mmcv, mmcv._ext
    from mmcv.ops import nms
    print("mmcv", mmcv.__version__)
except Exception:
    pass' 2>/dev/null)
}

# ---------------------------------------------------------------------------------------------
if PROBE="$(torch_info)"; then
  TORCH_INFO="${PROBE%%$'\n'*}"
  stage "torch: keeping torch ${TORCH_INFO% *} + torchvision ${TORCH_INFO#* }" ""
else
  stage "torch: installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION (a few minutes)" \
    "install a matching pair yourself: $PY -m pip install torch==X torchvision==Y, then re-run"
  "${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  PROBE="$(torch_info)" || { echo "torchvision does not import beside this torch" >&2; false; }
  TORCH_INFO="${PROBE%%$'\n'*}"
fi
TORCH_TAG="${TORCH_INFO% *}"
TORCH_BASE="${TORCH_TAG%%+*}"

# ---------------------------------------------------------------------------------------------
stage "build tools: setuptools<80.9 (mmcv, mmengine and mim need pkg_resources, silent before 80.9), wheel, ninja" \
  "check access to PyPI, then re-run"
has 'import wheel, ninja, setuptools as s; assert tuple(map(int, s.__version__.split(".")[:2])) < (80, 9)' \
  || "${PIP[@]}" 'setuptools<80.9' wheel ninja

MMCV_DEPS=(addict 'numpy<2' packaging Pillow pyyaml yapf opencv-python-headless matplotlib rich termcolor)
mmcv_ok() { has "import mmcv, mmcv._ext; from mmcv.ops import nms; assert mmcv.__version__ == '$MMCV_VERSION'"; }

install_mmcv_wheel() {  # install_mmcv_wheel FILE -> 0 when its compiled ops load against this torch
  "${PIP[@]}" --no-deps --force-reinstall "$1" >/dev/null 2>&1 && mmcv_ok
}

cuda_wanted() {
  [ "${FORCE_CUDA:-0}" = 1 ] || has 'import torch, shutil; assert torch.cuda.is_available() and shutil.which("nvcc")'
}

build_mmcv() {  # build mmcv from the PyPI sdist into $1
  local out="$1" src="$CACHE/src" log="$CACHE/mmcv-build.log" jobs="${MAX_JOBS:-$(nproc)}"
  mkdir -p "$src" "$out"
  if [ ! -f "$src/mmcv-$MMCV_VERSION.tar.gz" ]; then
    "$PY" -m pip download -q --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$src"
  fi
  rm -rf "$src/mmcv-$MMCV_VERSION"
  tar -xzf "$src/mmcv-$MMCV_VERSION.tar.gz" -C "$src"
  # mmcv's setup.py hard-codes -std=c++17; torch >= 2.14 headers refuse anything below C++20.
  local std=c++17
  if grep -rqs 'C++20 or later' "$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"/include/{ATen/ATen.h,c10/macros}; then
    std=c++20
  fi
  sed -i "s/-std=c++17/-std=$std/g" "$src/mmcv-$MMCV_VERSION/setup.py"
  local cuda=0; cuda_wanted && cuda=1
  echo "    compiling mmcv $MMCV_VERSION ops (-std=$std, MAX_JOBS=$jobs, FORCE_CUDA=$cuda); about 30 min on 2 cores; log: $log"
  ( cd "$src/mmcv-$MMCV_VERSION" && MMCV_WITH_OPS=1 FORCE_CUDA=$cuda MAX_JOBS=$jobs \
      "$PY" -m pip wheel -v --no-deps --no-build-isolation . -w "$src/dist" ) >"$log" 2>&1 &
  local pid=$! start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 60
    kill -0 "$pid" 2>/dev/null && printf '    ... still compiling mmcv (%d min, %d lines of log)\n' "$(( (SECONDS - start) / 60 ))" "$(wc -l <"$log")"
  done
  wait "$pid" || { tail -n 20 "$log" >&2; return 1; }
  # Debug symbols make _ext 32 MB; stripped it is about 1.4 MB.
  local whl; whl="$(ls "$src"/dist/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)"
  rm -rf "$src/unpacked" && mkdir -p "$src/unpacked"
  "$PY" -m wheel unpack -d "$src/unpacked" "$whl" >/dev/null
  find "$src/unpacked" -name '_ext*.so' -exec strip --strip-debug {} +
  "$PY" -m wheel pack -d "$out" "$src/unpacked"/mmcv-"$MMCV_VERSION" >/dev/null
  rm -rf "$src/unpacked" "$src/dist" "$src/mmcv-$MMCV_VERSION"
}

if [[ "$PROBE" == *$'\n'"mmcv $MMCV_VERSION" ]]; then  # checked with torch above
  stage "mmcv: $MMCV_VERSION with compiled ops already installed" ""
else
  stage "mmcv: looking for a prebuilt $MMCV_VERSION wheel for torch $TORCH_TAG" \
    "see $CACHE/mmcv-build.log; a C++ compiler (g++) and the Python headers are needed; then re-run"
  "${PIP[@]}" "${MMCV_DEPS[@]}"
  "${PIP[@]}" --no-deps mmengine==0.10.7  # mmcv imports it (its opencv-python dep is replaced by headless)
  installed=0
  for dir in "$CACHE/wheels/torch-$TORCH_TAG" "$EXTRA_WHEELS/torch-$TORCH_TAG" "$EXTRA_WHEELS/torch-$TORCH_BASE"; do
    for whl in "$dir"/mmcv-"$MMCV_VERSION"-*.whl; do
      [ -f "$whl" ] || continue
      if install_mmcv_wheel "$whl"; then echo "    using $whl"; installed=1; break 2; fi
      echo "    $whl does not load against torch $TORCH_TAG; skipping it"
    done
  done
  if [ "$installed" = 0 ]; then
    stage "mmcv: building $MMCV_VERSION from the PyPI sdist with its ops" \
      "see $CACHE/mmcv-build.log; a C++ compiler (g++) and the Python headers are needed; then re-run"
    build_mmcv "$CACHE/wheels/torch-$TORCH_TAG"
    install_mmcv_wheel "$(ls "$CACHE/wheels/torch-$TORCH_TAG"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)" \
      || { echo "the freshly built mmcv wheel does not load its ops" >&2; false; }
  fi
fi

# ---------------------------------------------------------------------------------------------
# The OpenMMLab packages are installed without their declared dependencies: mmengine and mmcv ask
# for opencv-python (GUI build, needs libGL), which would shadow the headless build, and mim-style
# "mmcv" requirements would pull an mmcv without ops. Their real dependencies are listed here.
# mmdeploy 1.3.1 (tools/deploy.py) declares protobuf<=3.20.2, which onnx 1.23 (protobuf>=6.31) refuses; it runs
# with today's protobuf, so it is installed without its declared dependencies too (its real ones,
# aenum, multiprocess and dill, are in DEPS).
OPENMMLAB=(mmengine==0.10.7 mmdet==3.3.0 mmsegmentation==1.2.2 mmpretrain==1.2.0 mmdeploy==1.3.1)
# mmdet's CocoPanopticMetric imports `panopticapi` (cocodataset/panopticapi, not on PyPI under that
# name); panopticapi-lite is a PyPI copy of that module. Its code needs numpy and Pillow only, so
# it goes in without its declared extras (scikit-image & co.), like the OpenMMLab packages.
NO_DEPS=("${OPENMMLAB[@]}" panopticapi-lite==0.2.0)
# mmpretrain 1.2.0 imports GenerationMixin & co. from transformers.modeling_utils, which 4.52
# removed; without them its multimodal models, and mmdet.models that imports mmpretrain, fail.
TRANSFORMERS_PIN='>=4.28,<4.52'
RUFF_VERSION=0.16.9  # the linter .ci/run runs (configured in pyproject.toml)
DEPS=(addict 'numpy<2' packaging Pillow pyyaml yapf opencv-python-headless matplotlib rich termcolor
      pycocotools scipy shapely six terminaltables tqdm prettytable ftfy regex einops
      importlib-metadata mat4py modelindex timm safetensors pytest pytest-timeout pytest-xdist tensorboard
      onnx==1.23.2 onnxruntime==1.32.0 aenum==3.1.17 multiprocess==0.70.19 dill==0.4.1
      "transformers$TRANSFORMERS_PIN" "ruff==$RUFF_VERSION"
      openmim==0.3.8)
# openmim 0.3.8 (the `mim` command), not 0.3.9: 0.3.9 adds only `mim download --dataset`, and
# declares opendatalab for it, whose openxlab dependency pins old setuptools, requests, rich, packaging, filelock and tqdm
stage "openmmlab: mmengine 0.10.7, mmdet 3.3.0, mmseg 1.2.2, mmpretrain 1.2.0, mmdeploy 1.3.1, timm and deps" \
  "check access to PyPI, then re-run"
if ! satisfied "${DEPS[@]}" "${NO_DEPS[@]}"; then  # the final check below imports them
  "${PIP[@]}" "${DEPS[@]}"
  "${PIP[@]}" --no-deps "${NO_DEPS[@]}"
fi

stage "focalnet_mm: this package in editable mode" "run '$PY -m pip install -e $ROOT --no-deps' to see the error"
# installed editable from this clone: where the import system finds the package, without
# importing it (nothing to reinstall then)
editable_here() {
  (cd / && "$PY" -c 'import importlib.util as u, os.path as p, sys
assert p.realpath(p.dirname(p.dirname(u.find_spec("focalnet_mm").origin))) == p.realpath(sys.argv[1])' \
    "$ROOT" >/dev/null 2>&1)
}
# (setup.py links configs/, tools/ and model-index.yml into focalnet_mm/.mim on this install: what
# focalnet_mm:: config bases and mim read, and writes the console commands, e.g. focalnet-mm)
{ editable_here && [ -e "$ROOT/focalnet_mm/.mim/model-index.yml" ] && [ -x "$VENV/bin/focalnet-mm" ]; } \
  || "${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

# Earlier versions of this script wrote an interpreter-start fix for transformers 5; the pin above
# replaces it.
rm -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/focalnet_mm_preload.pth"

stage "check: importing the whole stack" "run '$PY -c \"import focalnet_mm\"' to see the error"
"$PY" - <<'EOF'
import mmcv.ops, mmdet.models, mmseg.models, mmpretrain.models, timm, focalnet_mm  # this order on purpose
import panopticapi.evaluation  # mmdet's CocoPanopticMetric
import torch, mmcv, mmengine, mmdet, mmseg, mmpretrain
print(f'    torch {torch.__version__} | mmcv {mmcv.__version__} (ops) | mmengine {mmengine.__version__} | '
      f'mmdet {mmdet.__version__} | mmseg {mmseg.__version__} | mmpretrain {mmpretrain.__version__} | '
      f'timm {timm.__version__} | cuda {torch.cuda.is_available()}')
EOF
stage "done: activate with 'source ${VENV#$PWD/}/bin/activate'" ""
