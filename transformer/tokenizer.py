"""Character-level tokenizer: every distinct character is one token id."""
import json
import numbers


class CharTokenizer:
    def __init__(self, chars):
        self.chars = list(chars)
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("CharTokenizer: the vocabulary has repeated characters")
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    @property
    def vocab_size(self):
        return len(self.chars)

    def encode(self, text):
        unknown = sorted({ch for ch in text if ch not in self.stoi})
        if unknown:
            raise ValueError(f"CharTokenizer: characters not in the vocabulary: {''.join(unknown)!r}")
        return [self.stoi[ch] for ch in text]

    def decode(self, ids):
        """ids -> text. An id outside [0, vocab_size) or a non-integer is an error, never wrapped
        around (chars[-1]) or truncated (int(1.7))."""
        ids = list(ids)
        V = len(self.chars)
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, numbers.Integral) or not 0 <= i < V]
        if bad:
            raise ValueError(f"CharTokenizer.decode: token ids must be integers in [0, {V}), "
                             f"got {bad[0]!r}")
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self):
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, s):
        return cls(json.loads(s))
