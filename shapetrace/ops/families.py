"""Op families: what an op does to its tensors' shapes, in the terms every pass needs.

A pass implements one rule per family, never one per spelling; the op registry says which
family each op (in all its spellings) belongs to and binds its arguments once.
"""

from __future__ import annotations

import enum


class Family(enum.Enum):
    """What an op does, as far as shapes, fields and cost are concerned."""

    # Returns its input or a same-shape copy (contiguous, clone, dtype casts, Identity).
    IDENTITY = "identity"
    # Dropout and its kin: the input itself in eval, a masked copy in training.
    DROPOUT = "dropout"
    # Elementwise with broadcasting: arithmetic, comparisons, activations; scalars too.
    ELEMENTWISE = "elementwise"
    # Normalisation: elementwise, with statistics over some dims and a feature-size check.
    NORM = "norm"
    # Mixes every element along one dim, shape kept (softmax, normalize, cumsum, GLU halves it).
    ALONG = "along"
    # A sliding window over the trailing spatial dims: convolution, transposed conv, pooling.
    WINDOW = "window"
    # Adaptive pooling to a requested output size.
    ADAPTIVE = "adaptive"
    # Resampling by a scale or to a size: interpolate, upsample, pixel (un)shuffle.
    RESAMPLE = "resample"
    # Constant, reflect, replicate or circular padding of the trailing dims.
    PAD = "pad"
    # The same elements in another shape: view, reshape, flatten, squeeze, unsqueeze.
    RESHAPE = "reshape"
    # The same dims in another order: permute, transpose, movedim.
    PERMUTE = "permute"
    # Basic indexing: integers and slices along dims (getitem, narrow, select).
    INDEX = "index"
    # Pieces along one dim: split, chunk, unbind, tensor_split.
    SPLIT = "split"
    # Tensors joined along a dim: cat, stack.
    CONCAT = "concat"
    # Broadcast or repeat to a larger shape: expand, repeat, tile.
    EXPAND = "expand"
    # Elements moved within the same shape: flip, roll, channel shuffle.
    REARRANGE = "rearrange"
    # Reductions over dims: sum, mean, max, norm, argmax.
    REDUCE = "reduce"
    # A product with a weight over the last dim: Linear, F.linear.
    LINEAR = "linear"
    # Matrix products: matmul, mm, bmm, einsum, addmm.
    MATMUL = "matmul"
    # Attention over a sequence: MultiheadAttention, scaled dot-product attention.
    ATTENTION = "attention"
    # Lookups in a table: Embedding.
    EMBEDDING = "embedding"
    # New tensors from sizes: zeros, ones, arange, new_zeros, *_like.
    FACTORY = "factory"
    # Questions about a tensor that return sizes, not tensors: size(), dim(), shape, numel.
    SHAPE_QUERY = "shape_query"
    # A check on sizes: torch._assert.
    ASSERT = "assert"
