"""Character-level tokenizer: every distinct character is one token id."""
import json


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
        return "".join(self.chars[int(i)] for i in ids)

    def to_json(self):
        return json.dumps(self.chars)

    @classmethod
    def from_json(cls, s):
        return cls(json.loads(s))
