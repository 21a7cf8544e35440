#!/usr/bin/env bash
# Issue 4's Toyland tables, reproducible with one command (seeded; ~30 min on 2 cores):
#   1. every personalization method on ToyBooth subject dog_a: identity and prompt-element
#      recall of its placeholder prompts vs the base model's class prompts (`vstar eval`,
#      16 prompts x 4 images: at 8 x 2 the same run's figures moved by +-0.02);
#   2. DreamBooth-LoRA at the paper's lr 1e-4, batch 1, 400 to 12800 steps (the identity /
#      recall trade-off), 16 images per prompt: the steps move recall by about as much as
#      4 images per prompt leave it uncertain;
#   3. PALP (alignment weight 1, 0.3, 0.1) vs LoRA+TI on a complex target prompt, and at the
#      default weight on two more, same seeds, 32 images each (`vstar eval --prompt`).
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

train() { # name method token steps lr [extra flags...]; batch 4 unless BATCH is set
    local name=$1 method=$2 token=$3 steps=$4 lr=$5
    shift 5
    if [ ! -f "$OUT/$name/vstar.json" ]; then
        rm -rf "$OUT/$name"
        $VSTAR train --images "$IMAGES" --class dog --token "$token" --method "$method" \
            --steps "$steps" --lr "$lr" --batch "${BATCH:-4}" --seed 0 --out "$OUT/$name" "$@" >/dev/null
    fi
}
HEADER="| run | method | steps | train s | identity (base -> tuned) | recall (base -> tuned) |
|---|---|---|---|---|---|"
table() { # name...; 16 prompts x PER (default 4) images per run
    echo "$HEADER"
    for n in "$@"; do
        $VSTAR eval "$OUT/$n" --prompts 16 --images-per-prompt "${PER:-4}" 2>/dev/null | tail -1 | sed "s/^|/| $n |/"
    done
}

train lora lora immen 400 5e-4
train ti ti "<immen>" 2000 5e-3
train lora-ti lora-ti "<immen>" 400 5e-4
train dreambooth dreambooth immen 400 1e-4
train dreambooth-full dreambooth-full immen 400 5e-5
train svdiff svdiff immen 400 1e-3
train custom custom "<immen>" 400 1e-4
# Prior preservation (8 class images). With the fixed rare token the class prompt "a dog" and
# "a immen dog" encode nearly alike, so the prior loss undoes the subject at 400 steps (identity
# 0.652, base 0.658); 1600 steps get past it, and a learned token (LoRA+TI) separates the two.
train lora-prior lora immen 1600 5e-4 --prior-images 8
train lora-ti-prior lora-ti "<immen>" 400 5e-4 --prior-images 8
BATCH=1 train lora-prior-b1 lora immen 500 1e-4 --prior-images 8 # the guidance paper's settings
echo "## Every method on dog_a"
table lora ti lora-ti dreambooth dreambooth-full svdiff custom lora-prior lora-ti-prior lora-prior-b1

for s in 400 1600 3200 12800; do BATCH=1 train "lora-b1-$s" lora immen "$s" 1e-4; done
echo "## DreamBooth-LoRA: steps (lr 1e-4, batch 1; 16 prompts x 16 images per run)"
PER=16 table lora-b1-400 lora-b1-1600 lora-b1-3200 lora-b1-12800

TARGET="a watercolor painting of <immen> dog wearing a santa hat in the desert"
for w in 1 0.3 0.1; do train "palp-w$w" lora-ti "<immen>" 400 5e-4 --palp "$TARGET" --palp-weight "$w"; done
palp_table() { # target runs...
    local target=$1
    shift
    echo "## PALP vs LoRA+TI on: $target (32 images, same seeds)"
    echo "$HEADER"
    for n in "$@"; do
        $VSTAR eval "$OUT/$n" --prompt "$target" --images-per-prompt 32 2>/dev/null | tail -1 | sed "s/^|/| $n |/"
    done
}
palp_table "$TARGET" lora-ti palp-w1 palp-w0.3 palp-w0.1
# Two more targets at the default weight (0.1).
i=2
for target in "a sketch of <immen> dog wearing sunglasses in the snow" \
    "pixel art of a red <immen> dog wearing a rainbow scarf on the beach"; do
    train "palp$i" lora-ti "<immen>" 400 5e-4 --palp "$target"
    palp_table "$target" lora-ti "palp$i"
    i=$((i + 1))
done
