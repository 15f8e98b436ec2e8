#!/usr/bin/env bash
# Before/after table for bench/RESULTS.md: the baby-GPT step at each commit that changed speed,
# timed by TODAY's bench/gpt_step.py (copied into a worktree of that commit), our side only,
# then one paired ours/torch run of the current tree. Usage: bash bench/history.sh [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-2}"
py="$PWD/.venv/bin/python"
stages=(
  "c4b4b97 baseline: composed ops, numpy loops over batched x 2-d matmuls"
  "5c27c57 batched x 2-d matmuls folded into one GEMM"
  "62644d4 fused ops (softmax, CE, layer norm, GELU, attention softmax) + glibc keeps freed memory"
  "c971215 float32 erf (A&S 7.1.26) instead of scipy's"
  "4445371 fused Linear, cache-blocked fused kernels, BLAS row sums, blocked AdamW"
)
for s in "${stages[@]}"; do
  rev=${s%% *}; what=${s#* }
  wt=$(mktemp -d)
  git worktree add -q --detach "$wt" "$rev"
  cp bench/gpt_step.py "$wt/bench/" 2>/dev/null || { mkdir -p "$wt/bench"; cp bench/gpt_step.py "$wt/bench/"; }
  ms=$(cd "$wt" && PYTHONPATH="$wt" "$py" bench/gpt_step.py --config baby --rounds 2 --threads "$threads" --no-torch \
       | awk '$1=="baby"{print $2}')
  printf '%-8s %8s ms  %s\n' "$rev" "$ms" "$what"
  git worktree remove --force "$wt"
done
for v in composed no-malloc all-grads; do
  ms=$("$py" bench/gpt_step.py --config baby --rounds 2 --threads "$threads" --no-torch --variant "$v" | awk '$1=="baby"{print $2}')
  printf '%-8s %8s ms  %s\n' "HEAD" "$ms" "current tree, ablation: --variant $v"
done
"$py" bench/gpt_step.py --config baby --rounds 3 --threads "$threads"
