#!/usr/bin/env bash
# Regenerates every golden fixture (see tools/ref/README.md). Needs the reference venv; never run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-/work/venv-ref/bin/python}
BPE=${BPE:-/tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz}
"$PY" tools/ref/make_pipelines.py --bpe "$BPE"
"$PY" tools/ref/schedulers.py
"$PY" tools/ref/dump_real_params.py
"$PY" tools/ref/make_lora.py
"$PY" tools/ref/make_vision_fixtures.py
"$PY" tools/ref/make_sam_fixture.py
