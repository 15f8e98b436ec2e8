"""Positional encodings. Attention compares every query with every key regardless of where
they sit, so order must be added to the token vectors: either learned vectors (one per
position, GPT-2's `wpe`) or the fixed sinusoidal code of "Attention Is All You Need"."""
import math

from tinygrad_tx import Tensor, backend, nn


def sinusoidal_table(T, C):
    """(T, C) table: PE[pos, 2i] = sin(pos / 10000^(2i/C)), PE[pos, 2i+1] = cos(pos / 10000^(2i/C)).
    Wavelengths grow geometrically from 2pi to 10000 * 2pi. For a fixed offset k each (sin, cos)
    pair is rotated by the angle k * w_i, so PE(pos + k) is a linear map of PE(pos)."""
    xp = backend.xp("cpu")                      # built once on the host; the module moves it
    pos = xp.arange(T, dtype="float64")[:, None]                          # (T, 1)
    freq = xp.exp(-math.log(10000.0) * xp.arange(0, C, 2) / C)            # (ceil(C/2),) = 1 / 10000^(2i/C)
    table = xp.zeros((T, C), dtype="float64")
    table[:, 0::2] = xp.sin(pos * freq)
    table[:, 1::2] = xp.cos(pos * freq[: C // 2])
    return table


class SinusoidalPositions(nn.Module):
    """The fixed sinusoidal table (a constant, not a parameter). Used in place of the learned
    `wpe` embedding: both map positions (T,) -> (T, C)."""

    def __init__(self, block_size, n_embd):
        self.table = Tensor(sinusoidal_table(block_size, n_embd), dtype=backend.default_dtype(), name="PE")

    def forward(self, positions):
        return self.table[positions]                                       # (T, C)
