"""transformer.Diagnostics: the numbers it records are the ones they claim to be (update ratio,
saturation, entropy, per-head q/k/v gradients), fused and composed graphs give the same record,
it works on a plain MLP in a user's loop, the file is strict JSON read safely while written,
and in the Trainer it records every N steps, changes nothing about training, and resumes."""
import json
import math

import numpy as np
import pytest

from tinygrad_tx import Tensor, backend, fused_ops, nn, optim
from transformer import GPT, Diagnostics, GPTConfig, TextDataset, TrainConfig, Trainer, read_records
from transformer.diagnostics import attention_entropy


class TanhMLP(nn.Module):
    def __init__(self):
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 1)

    def forward(self, x):
        return self.fc2(self.fc1(x).tanh())


def mlp_step(model, diag, lr=0.1, seed=0):
    rng = np.random.default_rng(seed)
    x, y = Tensor(rng.normal(size=(16, 4)) * 3), Tensor(rng.normal(size=(16, 1)))
    opt = optim.SGD(model.parameters(), lr=lr)
    loss = ((model(x) - y) ** 2).mean()
    diag.watch(loss)
    opt.zero_grad()
    loss.backward()
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    opt.step()
    return diag.record(0, lr=lr), x, before


def test_mlp_in_a_users_loop_update_ratio_and_saturation(tmp_path):
    backend.manual_seed(0)
    model = TanhMLP()
    diag = Diagnostics(model, tmp_path / "d.jsonl")
    rec, x, before = mlp_step(model, diag)
    assert set(rec) == {"step", "loss", "lr", "grad_norm", "params", "activations"}   # no blocks, no attention here
    for name, p in model.named_parameters():
        row = rec["params"][name]
        assert row["grad_norm"] == pytest.approx(np.linalg.norm(p.grad))
        assert row["weight_norm"] == pytest.approx(np.linalg.norm(p.data))
        # plain SGD: the update is lr * g, so the ratio is lr ||g|| / ||w_before||
        assert row["update_ratio"] == pytest.approx(0.1 * np.linalg.norm(p.grad) / np.linalg.norm(before[name]), rel=1e-5)
    h = x.data @ before["fc1.weight"] + before["fc1.bias"]                           # the tanh's input
    act = rec["activations"]["tanh"]
    assert act["saturated"] == pytest.approx(float((np.abs(h) > 2).mean()))
    assert act["mean"] == pytest.approx(float(h.mean()), rel=1e-5)
    assert 0 < act["saturated"] < 1
    assert rec["grad_norm"] == pytest.approx(math.sqrt(sum(r["grad_norm"] ** 2 for r in rec["params"].values())))
    assert read_records(tmp_path / "d.jsonl") == [rec]


def test_relu_dead_fraction():
    class Net(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(3, 4)

        def forward(self, x):
            return self.fc(x).relu().sum()
    net = Net()
    net.fc.weight.data[...] = 0
    net.fc.bias.data[...] = np.array([-1.0, -1.0, 1.0, 0.5])       # units 0, 1 dead for every input
    net.fc.weight.data[0, 3] = 1.0                                 # unit 3 negative for x0 < -0.5
    x = Tensor(np.array([[0.0, 0, 0], [-2.0, 0, 0]]))
    diag = Diagnostics(net)
    loss = net(x)
    diag.watch(loss)
    loss.backward()
    act = diag.record(0)["activations"]["relu"]          # applied in the top module: no scope
    assert act["dead"] == 0.5                      # 2 of 4 units are <= 0 on the whole batch
    assert act["saturated"] == 5 / 8               # 2 + 3 of the 8 inputs are <= 0


def test_attention_entropy_values():
    T = 5
    uniform = np.full((1, 1, T, T), 1 / T)
    one_hot = np.zeros((1, 1, T, T))
    one_hot[..., 0] = 1
    assert attention_entropy(uniform)[0] == pytest.approx(math.log(T))
    assert attention_entropy(one_hot)[0] == 0.0


def gpt_record(fused, activation="gelu", seed=0):
    backend.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, activation=activation))
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 11, (3, 8)), rng.integers(0, 11, (3, 8))
    diag = Diagnostics(model)
    opt = optim.AdamW(model.parameters(), lr=1e-3)
    with fused_ops(fused):
        _, loss = model(x, y)
        diag.watch(loss)
        opt.zero_grad()
        loss.backward(leaves_only=fused)
        opt.step()
    return model, diag.record(0, lr=1e-3)


@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
def test_gpt_record_fused_equals_composed(activation):
    model, fused = gpt_record(True, activation)
    _, composed = gpt_record(False, activation)
    assert set(fused["residual"]) == {"h.0", "h.1"}
    assert set(fused["activations"]) == {"h.0.mlp:gelu", "h.1.mlp:gelu"}
    assert set(fused["attention"]) == {"h.0.attn", "h.1.attn"}
    assert composed.keys() == fused.keys()
    for key in ("residual", "activations", "attention"):
        for name, row in fused[key].items():
            for stat, value in row.items():
                assert np.allclose(composed[key][name][stat], value, rtol=1e-4, atol=1e-7), (key, name, stat)
    for name, row in fused["params"].items():
        assert composed["params"][name]["grad_norm"] == pytest.approx(row["grad_norm"], rel=1e-4)
    # the per-head q/k/v gradient norms split c_attn's gradient exactly
    for layer in range(2):
        a = fused["attention"][f"h.{layer}.attn"]
        lin = model.h[layer].attn.c_attn
        total = np.linalg.norm(lin.weight.grad) ** 2 + np.linalg.norm(lin.bias.grad) ** 2
        assert sum(g ** 2 for k in ("q_grad", "k_grad", "v_grad") for g in a[k]) == pytest.approx(total)
        assert len(a["entropy"]) == 2 and all(0 < e <= math.log(8) for e in a["entropy"])


def test_strict_json_and_partial_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    model = TanhMLP()
    diag = Diagnostics(model, path)
    diag.record(0, loss=float("nan"), lr=float("inf"))
    line = path.read_text().splitlines()[0]
    def refuse(c):
        raise ValueError(c)
    rec = json.loads(line, parse_constant=refuse)              # no NaN / Infinity tokens
    assert rec["loss"] is None and rec["lr"] is None
    with open(path, "a") as f:
        f.write('{"step": 1, "lo')                              # a line being written
    assert [r["step"] for r in read_records(path)] == [0]
    with open(path, "a") as f:
        f.write('ss": 2.0}\n')
    assert [r["step"] for r in read_records(path)] == [0, 1]


TINY = dict(n_layer=1, n_head=2, n_embd=16, block_size=8)


def tiny_trainer(out, interval, max_iters, resume=False, callback=None):
    data = TextDataset("hello world, this is a tiny corpus for tests. " * 40)
    mconf = GPTConfig(vocab_size=data.tokenizer.vocab_size, **TINY)
    tconf = TrainConfig(max_iters=max_iters, eval_interval=4, eval_iters=1, batch_size=2, warmup_iters=2,
                        diagnostics_interval=interval)
    return Trainer(mconf, tconf, data, out, resume=resume, progress=False, callback=callback)


def test_trainer_records_every_n_steps_and_changes_nothing(tmp_path):
    on = tiny_trainer(tmp_path / "on", 3, 10)
    last_on = on.run()
    recs = read_records(tmp_path / "on" / "diagnostics.jsonl")
    assert [r["step"] for r in recs] == [0, 3, 6, 9]
    assert all(r["lr"] > 0 and r["loss"] > 0 and "attention" in r for r in recs)
    off = tiny_trainer(tmp_path / "off", 0, 10)
    assert off.run()["val_loss"] == last_on["val_loss"]          # recording draws no random numbers
    assert not (tmp_path / "off" / "diagnostics.jsonl").exists()
    assert all(np.array_equal(a, b) for a, b in zip(on.model.state_dict().values(), off.model.state_dict().values()))


def test_trainer_resume_continues_the_file(tmp_path):
    full = tiny_trainer(tmp_path / "full", 2, 10)
    full.run()
    def interrupt(step, loss):
        if step == 9:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tiny_trainer(tmp_path / "part", 2, 10, callback=interrupt).run()    # last checkpoint: step 8
    path = tmp_path / "part" / "diagnostics.jsonl"
    assert [r["step"] for r in read_records(path)] == [0, 2, 4, 6, 8]       # 8 is past the checkpoint
    with open(path, "a") as f:
        f.write('{"step": 9, "lo')                                           # a torn line
    tiny_trainer(tmp_path / "part", 2, 10, resume=True).run()
    a, b = read_records(tmp_path / "full" / "diagnostics.jsonl"), read_records(path)
    assert [r["step"] for r in b] == [r["step"] for r in a] == [0, 2, 4, 6, 8]
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a])


def test_config_rejects_negative_interval():
    with pytest.raises(ValueError, match="diagnostics_interval must be an integer >= 0, got -1"):
        TrainConfig(diagnostics_interval=-1)
