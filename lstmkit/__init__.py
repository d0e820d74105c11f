"""lstmkit: an open course on LSTM networks.

- lstmkit.reference: the NumPy reference LSTM (forward and hand-derived backward).
- lstmkit.gradcheck: finite-difference gradient checks.
- lstmkit.convert: parameter conversions between the reference, PyTorch, Keras and CS231n layouts.
"""

from . import reference
from .gradcheck import gradcheck, numerical_gradient, rel_error
from .reference import (
    backward,
    cell_backward,
    cell_forward,
    forward,
    init_params,
    sigmoid,
    zero_state,
)

__version__ = "0.1.0"

__all__ = [
    "reference", "gradcheck", "numerical_gradient", "rel_error", "backward", "cell_backward",
    "cell_forward", "forward", "init_params", "sigmoid", "zero_state",
]
