#!/usr/bin/env bash
# Before/after table for bench/RESULTS.md: the baby-GPT step at each commit that changed speed,
# timed by TODAY's bench/gpt_step.py (copied into a worktree of that commit), our side only,
# then one paired ours/torch run of the current tree.
# The commits take turns within each round (round-robin), so the VM's slow and fast spells
# fall on all of them alike; the table shows each commit's median over the rounds.
# Usage: bash bench/history.sh [threads] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
rounds="${2:-3}"
py="$PWD/.venv/bin/python"
stages=(
  "c4b4b97 baseline: composed ops, numpy loops over batched x 2-d matmuls"
  "5c27c57 batched x 2-d matmuls folded into one GEMM"
  "62644d4 fused ops (softmax, CE, layer norm, GELU, attention softmax) + glibc keeps freed memory"
  "c971215 float32 erf (A&S 7.1.26) instead of scipy's"
  "4445371 fused Linear, cache-blocked fused kernels, BLAS row sums, blocked AdamW"
  "de14742 graph released during training backward, fused q k^T + mask + softmax, direct-Phi GELU"
  "2628fa4 fused self-attention node, GELU sign by bit ops, 256 KiB blocks"
  "5d3bab8 layer norm backward by matvecs, attention scales q not the scores"
)
trees=()
cleanup() { for wt in "${trees[@]}"; do git worktree remove --force "$wt" 2>/dev/null || true; done; }
trap cleanup EXIT
for s in "${stages[@]}"; do
  wt=$(mktemp -d)
  git worktree add -q --detach "$wt" "${s%% *}"
  mkdir -p "$wt/bench" && cp bench/gpt_step.py "$wt/bench/"
  trees+=("$wt")
done
declare -A ms
for r in $(seq "$rounds"); do
  for i in "${!stages[@]}"; do
    wt=${trees[$i]}
    v=$(cd "$wt" && PYTHONPATH="$wt" "$py" bench/gpt_step.py --config baby --rounds 1 --threads "$threads" --no-torch \
        | awk '$1=="baby"{print $2}')
    ms[$i]="${ms[$i]:-} $v"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for i in "${!stages[@]}"; do
  s=${stages[$i]}
  printf '%-8s %8s ms  %s   (rounds:%s)\n' "${s%% *}" "$(echo "${ms[$i]}" | median)" "${s#* }" "${ms[$i]}"
done
for v in composed no-malloc all-grads no-numba; do
  m=$("$py" bench/gpt_step.py --config baby --rounds "$rounds" --threads "$threads" --no-torch --variant "$v" | awk '$1=="baby"{print $2}')
  printf '%-8s %8s ms  %s\n' "HEAD" "$m" "current tree, ablation: --variant $v"
done
"$py" bench/gpt_step.py --config baby --rounds "$rounds" --threads "$threads"
