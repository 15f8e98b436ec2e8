"""Module.to(dtype=...), .double(), .float(): every float parameter and buffer converted in place,
as torch's model.double() does; integer buffers and the parameter objects themselves stay."""
import numpy as np
import pytest

from tinygrad_tx import Tensor, backend, nn, optim
from transformer import GPT, GPTConfig


def small_gpt(**kw):
    backend.manual_seed(0)
    return GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, **kw))


def test_double_converts_parameters_buffers_and_grads():
    model = small_gpt(pos="sinusoidal")
    assert model.wte.weight.dtype == np.float32 and model.wpe.table.dtype == np.float32
    ids = np.array([[1, 2, 3]])
    _, loss = model(ids, ids)
    loss.backward()
    params = model.parameters()
    assert model.double() is model
    assert model.parameters() == params                            # the same Tensor objects, in place
    for name, p in model.named_parameters():
        assert p.dtype == np.float64 and p.grad.dtype == np.float64, name
    assert model.wpe.table.dtype == np.float64                     # the sinusoidal buffer too
    assert model.lm_head.tied_weight is model.wte.weight           # tying survives
    logits = model(ids)
    assert logits.dtype == np.float64
    model.float()
    assert all(p.dtype == np.float32 for p in model.parameters()) and model(ids).dtype == np.float32


def test_double_keeps_values_and_optimizer_references():
    model = small_gpt()
    before = {n: p.numpy().astype(np.float64) for n, p in model.named_parameters()}
    model.to(dtype="float64")
    opt = optim.SGD(model.parameters(), lr=0.1)
    for n, p in model.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[n])
    _, loss = model(np.array([[1, 2]]), np.array([[2, 3]]))
    loss.backward()
    opt.step()
    assert all(p.dtype == np.float64 for p in opt.params())


def test_integer_buffers_keep_their_dtype():
    class WithIds(nn.Module):
        def __init__(self):
            self.ids = Tensor(np.arange(3))
            self.lin = nn.Linear(2, 2)
    m = WithIds().double()
    assert m.ids.dtype.kind == "i" and m.lin.weight.dtype == np.float64


def test_to_rejects_a_non_float_dtype():
    with pytest.raises(TypeError, match="Module.to: dtype must be a float dtype, got int64"):
        small_gpt().to(dtype="int64")


def test_torch_double_agrees(torch):
    """The same conversion in torch: parameters float64, values unchanged."""
    lin = torch.nn.Linear(2, 3)
    ours = nn.Linear(2, 3)
    ours.weight.data[...] = lin.weight.detach().numpy().T
    lin.double()
    ours.double()
    assert lin.weight.dtype == torch.float64 and ours.weight.dtype == np.float64
    np.testing.assert_array_equal(ours.weight.numpy(), lin.weight.detach().numpy().T)
