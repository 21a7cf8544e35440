#!/usr/bin/env bash
# Issue 4's Toyland tables, reproducible with one command (seeded; ~20-30 min on 2 cores):
#   1. every personalization method on ToyBooth subject dog_a: identity and prompt-element
#      recall of its placeholder prompts vs the base model's class prompts (`vstar eval`);
#   2. DreamBooth-LoRA at 100, 200, 400 and 800 steps (the identity / recall trade-off);
#   3. PALP vs LoRA+TI on one complex target prompt, same seeds (`vstar eval --prompt`).
# Usage: tools/toyland/methods.sh [OUT] (default out/methods). Needs the pretrained Toyland
# (assets/toyland, or VSTAR_TOYLAND=DIR).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-out/methods}
mkdir -p "$OUT"
cargo build --release -q
VSTAR=target/release/vstar
[ -d "$OUT/toyland/toybooth/dog_a" ] || $VSTAR toyland render --out "$OUT/toyland" --size 32 >/dev/null
IMAGES="$OUT/toyland/toybooth/dog_a"

train() { # name method token steps lr [extra flags...]
    local name=$1 method=$2 token=$3 steps=$4 lr=$5
    shift 5
    if [ ! -f "$OUT/$name/vstar.json" ]; then
        rm -rf "$OUT/$name"
        $VSTAR train --images "$IMAGES" --class dog --token "$token" --method "$method" \
            --steps "$steps" --lr "$lr" --batch 4 --seed 0 --out "$OUT/$name" "$@" >/dev/null
    fi
}
table() { # name...
    echo "| run | method | steps | train s | identity (base -> tuned) | recall (base -> tuned) |"
    echo "|---|---|---|---|---|---|"
    for n in "$@"; do
        $VSTAR eval "$OUT/$n" 2>/dev/null | tail -1 | sed "s/^|/| $n |/"
    done
}

train lora lora immen 400 5e-4
train ti ti "<immen>" 400 5e-3
train lora-ti lora-ti "<immen>" 400 5e-4
train dreambooth dreambooth immen 400 1e-4
train dreambooth-full dreambooth-full immen 400 5e-5
train svdiff svdiff immen 400 1e-3
train custom custom "<immen>" 400 1e-4
train lora-prior lora immen 400 5e-4 --prior-images 8
echo "## Every method on dog_a"
table lora ti lora-ti dreambooth dreambooth-full svdiff custom lora-prior

for s in 100 200 800; do train "lora-$s" lora immen "$s" 5e-4; done
echo "## DreamBooth-LoRA: steps"
table lora-100 lora-200 lora lora-800

TARGET="a watercolor painting of <immen> dog wearing a santa hat in the desert"
train palp lora-ti "<immen>" 400 5e-4 --palp "$TARGET"
echo "## PALP vs LoRA+TI on: $TARGET (8 images, same seeds)"
echo "| run | method | steps | train s | identity (base -> tuned) | recall (base -> tuned) |"
echo "|---|---|---|---|---|---|"
for n in lora-ti palp; do
    $VSTAR eval "$OUT/$n" --prompt "$TARGET" --images-per-prompt 8 2>/dev/null | tail -1 | sed "s/^|/| $n |/"
done
