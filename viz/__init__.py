"""viz: drawing the engine's computation graphs and gradients.

Reads only public Tensor attributes (parents, op_name, data, grad, scope); imports
tinygrad_tx and transformer, never the other way round. Not written yet.
"""
