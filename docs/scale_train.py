"""Continue training an exported model with PyTorch DistributedDataParallel (docs/scale.md).

    tx export --ckpt out --out out-hf
    torchrun --nproc_per_node=2 docs/scale_train.py --model out-hf --data input.txt --steps 1000 --out out-torch

Every process (rank) holds a full copy of the model and draws its own batches; after each
backward DDP averages the gradients across ranks (an all-reduce), so every copy takes the same
AdamW step. The loss is the one `tx train` minimises: mean next-token cross-entropy. Runs on
CPU (gloo) or one GPU per process (nccl). Needs torch, transformers and tokenizers.
"""
import argparse
import json
import os
import pathlib

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from transformers import AutoTokenizer, GPT2LMHeadModel


def get_batch(ids, batch_size, block_size, rng):
    """x (B, T) token ids from random offsets, y (B, T) the same shifted by one: the next tokens
    (the same sampling as transformer.data.TextDataset.get_batch)."""
    starts = rng.integers(0, len(ids) - block_size, size=batch_size)
    x = np.stack([ids[s:s + block_size] for s in starts])
    y = np.stack([ids[s + 1:s + 1 + block_size] for s in starts])
    return torch.from_numpy(x), torch.from_numpy(y)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="Hugging Face GPT-2 folder (tx export --out)")
    ap.add_argument("--data", required=True, help="text file to train on")
    ap.add_argument("--out", default=None, help="folder to save the trained model in (rank 0)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=12, help="per process")
    ap.add_argument("--block-size", type=int, default=None, help="default: the model's n_positions")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=1337)
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")        # torchrun sets RANK, WORLD_SIZE, MASTER_ADDR
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")

    tok = AutoTokenizer.from_pretrained(args.model)
    model = GPT2LMHeadModel.from_pretrained(args.model, dtype=torch.float32).to(device).train()
    ddp = DDP(model, device_ids=[device.index] if cuda else None)
    T = args.block_size or model.config.n_positions
    ids = np.array(tok(pathlib.Path(args.data).read_text(encoding="utf-8"))["input_ids"], dtype=np.int64)
    rng = np.random.default_rng(args.seed + rank)                 # each rank its own batches

    # nanoGPT's split: weight decay on 2-d weights only (as tx train)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99))
    for step in range(args.steps):
        x, y = (t.to(device) for t in get_batch(ids, args.batch_size, T, rng))
        logits = ddp(input_ids=x).logits                           # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()                                            # DDP all-reduces the gradients here
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if rank == 0:
            print(json.dumps({"step": step, "loss": loss.item(), "world_size": world}), flush=True)
    dist.barrier()
    dist.destroy_process_group()        # first, so save_pretrained sees no process group to coordinate
    if rank == 0 and args.out:
        model.save_pretrained(args.out)
        tok.save_pretrained(args.out)


if __name__ == "__main__":
    main()
