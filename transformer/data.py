"""Text data: a character dataset split 90/10 by position, and random (B, T) batches."""
import hashlib
import numbers
import pathlib

import numpy as np

from .tokenizer import CharTokenizer

DEFAULT_CORPUS = pathlib.Path(__file__).parent / "data" / "tinyshakespeare.txt"


class TextDataset:
    """The first 90% of the characters train, the last 10% validate (as nanoGPT's char recipe)."""

    def __init__(self, text, tokenizer=None, val_fraction=0.1):
        if len(text) < 4:
            raise ValueError("TextDataset: the text is too short to train on")
        if not 0 < val_fraction < 1:
            raise ValueError(f"TextDataset: val_fraction must be in (0, 1), got {val_fraction!r}")
        # identifies the corpus in checkpoints: --resume refuses to continue on another text
        self.sha256, self.num_chars = hashlib.sha256(text.encode("utf-8")).hexdigest(), len(text)
        self.tokenizer = tokenizer or CharTokenizer.from_text(text)
        ids = np.array(self.tokenizer.encode(text), dtype=np.int64)
        n = int(len(ids) * (1 - val_fraction))
        self.train, self.val = ids[:n], ids[n:]

    @classmethod
    def from_file(cls, path=None, tokenizer=None):
        path = pathlib.Path(path) if path else DEFAULT_CORPUS
        if not path.is_file():
            raise FileNotFoundError(f"TextDataset: no such file: {path}")
        return cls(path.read_text(encoding="utf-8"), tokenizer)

    def get_batch(self, split, batch_size, block_size, rng):
        """x (B, T) ids and y (B, T) the same shifted one to the left (the next characters)."""
        if split not in ("train", "val"):
            raise ValueError(f"TextDataset.get_batch: split must be 'train' or 'val', got {split!r}")
        for name, n in (("batch_size", batch_size), ("block_size", block_size)):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
                raise ValueError(f"TextDataset.get_batch: {name} must be an integer >= 1, got {n!r}")
        data = self.train if split == "train" else self.val
        if len(data) <= block_size:
            raise ValueError(f"TextDataset: the {split} split has {len(data)} tokens, fewer than block_size+1")
        starts = rng.integers(0, len(data) - block_size, size=batch_size)
        x = np.stack([data[s:s + block_size] for s in starts])               # (B, T)
        y = np.stack([data[s + 1:s + 1 + block_size] for s in starts])       # (B, T)
        return x, y
