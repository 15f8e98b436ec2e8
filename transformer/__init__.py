"""The transformer, built only from tinygrad_tx primitives: attention, masks, positional
encodings, blocks, GPT, the encoder-decoder, data, training, generation and checkpoints."""
from .attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from .blocks import MLP, Block
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import DEFAULT_CORPUS, TextDataset
from .generate import generate, sample_next
from .gpt import GPT, GPTConfig
from .masks import causal_mask, combine_masks, padding_mask
from .positional import SinusoidalPositions, sinusoidal_table
from .seq2seq import Transformer, TransformerConfig
from .tokenizer import CharTokenizer
from .diagnostics import Diagnostics, read_records
from .train import TrainConfig, Trainer, TrainingDiverged, load_model, lr_at

__all__ = ["MultiHeadAttention", "merge_heads", "scaled_dot_product_attention", "split_heads", "MLP",
           "Block", "CheckpointError", "load_checkpoint", "save_checkpoint", "DEFAULT_CORPUS",
           "TextDataset", "generate", "sample_next", "GPT", "GPTConfig", "causal_mask", "combine_masks",
           "padding_mask", "SinusoidalPositions", "sinusoidal_table", "Transformer", "TransformerConfig",
           "CharTokenizer", "TrainConfig", "Trainer", "TrainingDiverged", "load_model", "lr_at", "Diagnostics",
           "read_records"]
