"""Give a fixed-batch-1 ONNX model a dynamic batch axis, so several frames run as one batch.

`dynamic_batch` rewrites the graph; `verify_batch` checks a rewritten model against the original
(one run per sample versus one run on the stacked batch).

Approach
--------
The edit is a small "vmap" over the ONNX graph. Every tensor the batched inputs reach gets a
*batch layout*, tracked node by node in graph order:

* the batched graph always keeps the batch on axis 0;
* a tensor whose per-sample (batch-1) shape ``S`` has a size-1 axis ``k`` may *reuse* it: the batched
  tensor is ``[N] + S`` without axis ``k``. ``k == 0`` is the plain case (the 1 of ``[1, C, H, W]``
  becomes N); ``k > 0`` happens after a Transpose that moved the 1 (``[H, W, 1, C]`` is batched as
  ``[N, H, W, C]``) and costs nothing, because dropping a size-1 axis does not change the memory order;
* a tensor with no size-1 axis to reuse gets a new leading axis: ``[N] + S`` (for example the
  ``[24, 2, 1936]`` of a ShuffleNet channel shuffle, or a detector output ``[605, 95]`` that has no
  batch axis at all; such an output becomes ``[N, 605, 95]``).

Each op has a batching rule that checks, from the per-sample shapes (ONNX shape inference, node by
node) and from the values of constant and shape tensors (tracked symbolically: the batch size is a
symbol, so ``Shape -> Gather -> Concat -> Reshape`` chains are understood), that it computes every
sample independently, and rewrites what would pin or mix the batch:

* ``Reshape``/``Flatten`` targets: the target is recomputed per sample and written as
  ``[0, ...]`` (``0`` copies the input's dim 0, which is N) with the other entries as fixed numbers,
  or ``-1`` for the single dynamic one; a computed target that already yields the batched shape
  (``Concat(Shape(x)[0:2], [-1])``) is kept;
* axis attributes and inputs (``Transpose`` perm, ``Concat``/``Gather``/``Softmax``/``Split`` axis,
  ``Slice``/``Squeeze``/``Unsqueeze``/``Reduce*`` axes, ``Pad`` pads, ``Tile`` repeats, ``Expand``
  shapes, ``Resize`` sizes, per-axis quantization axes) are moved to the batched layout;
* constants that meet batched data in ``Concat`` are broadcast to N with ``Expand``; constants that
  meet a moved layout in an elementwise op are reshaped to match;
* graph inputs get dim 0 = ``dim_name``, graph outputs ``[dim_name] + S[1:]`` (or ``[dim_name] + S``
  where the per-sample output had no leading 1), and the stale ``value_info`` is dropped.

Anything a rule cannot prove per-sample raises `BatchAxisError` naming the node and the reason: an op
without a batching rule (control flow, RNNs, NonZero, NonMaxSuppression, Einsum, ...), a reduction,
slice, concat or softmax over the batch axis, a shape computed in a way not tracked, a constant whose
shape would broadcast against the batch, a ``DynamicQuantizeLinear`` (it picks one scale for the whole
tensor, so every sample would depend on the others), a ``MaxPool`` whose indices output is used, a
``BatchNormalization`` in training mode.

Limits
------
* Graph inputs whose dim 0 is 1 (or symbolic) are taken as batched; inputs with no dim 0 or a fixed
  dim 0 other than 1 (``style_weights [26]`` of the multi-style network) stay shared by all samples.
* A model whose batched inputs already all have a symbolic dim 0 is returned unchanged and is *not*
  analysed (its author declared it batchable).
* Dynamic non-batch dims (H, W) are symbols; a check that needs their value fails safe (the edit
  refuses) rather than guessing.
* Only the default ONNX domain has batching rules; nodes of other domains may only touch unbatched
  tensors. Subgraphs (If/Loop/Scan) are refused.
* Numerics: ONNX Runtime may pick other kernels for batch N than for batch 1, so float outputs can
  differ in the last bits (at most 1.7e-6 below).

Models in ``shared/models`` (batch of 3 different real inputs, pre-processed as MODELS.md says: 3
frames of vtest.avi for the detectors and multistyle26, obama/biden/zidane photos for the face models,
with YuNet boxes/landmarks for the PFLD crops and the MobileFaceNet alignment; compared with 3 single
runs of the original, CPUExecutionProvider, onnxruntime 1.32):

=============================  ===============================================  =====================
model                          edit                                             max abs diff
=============================  ===============================================  =====================
yolox_nano_coco_416            works (computed Reshape targets kept as is)      0
yolo-fastestv2_coco_352        works; output ``[605, 95]`` -> ``[N, 605, 95]``  0
                               (channel shuffles rewritten)
yolov8n_coco_640_int8          **refused**: ``DynamicQuantizeLinear`` takes     forced through: 105
                               one scale over the whole batch                   (box px), 0.23 (score)
yunet_n_320_320                works                                            0
yunet_n_dynamic                already dynamic: returned unchanged              0
ultraface_rfb320               works                                            2.4e-7
ultraface_rfb320_raw           works                                            1.7e-6
scrfd_2.5g_bnkps               works, H/W stay dynamic; outputs ``[n, k]`` ->   0 (640x640)
                               ``[N, n, k]``
pfld68_112                     already dynamic: returned unchanged              0
pfld106_lite_112               works                                            3.0e-7
mobilefacenet_128d             already dynamic: returned unchanged              0
style_multistyle26             works, h/w stay dynamic; ``style_weights``       0 (128x96)
                               stays one shared ``[26]``
style_arbitrary_predict        works                                            0
style_arbitrary_transform      works; both inputs batched (a style per sample)  0
=============================  ===============================================  =====================

"Forced through" means the ``DynamicQuantizeLinear`` rule was patched out for the measurement: with 3
different frames the batched run moves boxes by up to 105 px and scores by up to 0.23 (3 identical
frames give 0), so refusing it is right. The analysis also passes on the three already-dynamic models
(when run on them directly), with the same 0 difference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from streamcnn.errors import StreamcnnError

__all__ = ["BatchAxisError", "dynamic_batch", "verify_batch"]


class BatchAxisError(StreamcnnError):
    """The model cannot be given a dynamic batch axis (or a batched run differs from single runs).

    The message names the model, the node (op type and name) and the reason."""


# --------------------------------------------------------------------------------------------------
# symbolic dims: an integer monomial coef * atom1 * atom2 ...; atoms are the batch size, named dims
# of the model (H, W) and dims nothing is known about. Sums and inexact quotients become new atoms.


@dataclass(frozen=True)
class _Sym:
    coef: int
    atoms: tuple[str, ...]

    def __str__(self) -> str:
        parts = ([str(self.coef)] if self.coef != 1 else []) + list(self.atoms)
        return "*".join(parts)

    def __mul__(self, other: Any) -> Any:
        return _mul(self, other)

    __rmul__ = __mul__

    def __add__(self, other: Any) -> Any:
        return _add(self, other)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Any:
        return _opaque("-", self, other)

    def __rsub__(self, other: Any) -> Any:
        return _opaque("-", other, self)

    def __floordiv__(self, other: Any) -> Any:
        return _div(self, other)

    def __rfloordiv__(self, other: Any) -> Any:
        return _div(other, self)

    __truediv__ = __floordiv__
    __rtruediv__ = __rfloordiv__

    def __neg__(self) -> Any:
        return _mk(-self.coef, self.atoms)


_Dim = Any  # int | _Sym
_BATCH_ATOM = "B"


def _mk(coef: int, atoms: Iterable[str]) -> _Dim:
    atoms = tuple(sorted(atoms))
    if coef == 0 or not atoms:
        return int(coef)
    return _Sym(int(coef), atoms)


def _parts(x: _Dim) -> tuple[int, tuple[str, ...]]:
    if isinstance(x, _Sym):
        return x.coef, x.atoms
    return int(x), ()


def _opaque(op: str, a: _Dim, b: _Dim) -> _Dim:
    return _Sym(1, (f"({a}{op}{b})",))


def _mul(a: _Dim, b: _Dim) -> _Dim:
    (ca, aa), (cb, ab) = _parts(a), _parts(b)
    return _mk(ca * cb, aa + ab)


def _add(a: _Dim, b: _Dim) -> _Dim:
    if not isinstance(a, _Sym) and not isinstance(b, _Sym):
        return int(a) + int(b)
    pa, pb = _parts(a), _parts(b)
    if pa[1] == pb[1]:
        return _mk(pa[0] + pb[0], pa[1])
    return _opaque("+", a, b)


def _div(a: _Dim, b: _Dim) -> _Dim:
    """a / b for dims: exact when b divides a, truncating for plain ints, else a new atom."""
    (ca, aa), (cb, ab) = _parts(a), _parts(b)
    if not aa and not ab:
        q = abs(ca) // abs(cb)
        return q if (ca >= 0) == (cb >= 0) else -q
    rest = list(aa)
    for atom in ab:
        if atom not in rest:
            return _opaque("/", a, b)
        rest.remove(atom)
    if cb == 0 or ca % cb:
        return _opaque("/", a, b)
    return _mk(ca // cb, rest)


BATCH = _Sym(1, (_BATCH_ATOM,))


def _is_int(x: _Dim) -> bool:
    return not isinstance(x, _Sym)


def _prod(dims: Iterable[_Dim]) -> _Dim:
    out: _Dim = 1
    for d in dims:
        out = _mul(out, d)
    return out


def _fmt(shape: Sequence[_Dim] | None) -> str:
    return "unknown" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"


# --------------------------------------------------------------------------------------------------
# values of small tensors (shape computations and constants), as numpy arrays; dtype object when they
# hold symbols

_MAX_VALUE = 1 << 14  # elements; bigger constants (weights) are not tracked
_INT_TYPES = {TensorProto.INT64, TensorProto.INT32, TensorProto.INT16, TensorProto.INT8, TensorProto.UINT8,
              TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64}


def _static(v: np.ndarray | None) -> np.ndarray | None:
    """``v`` as an int64 array when it holds plain integers only, else None."""
    if v is None:
        return None
    if v.dtype == object:
        if any(isinstance(x, _Sym) for x in v.flat):
            return None
        return v.astype(np.int64)
    if np.issubdtype(v.dtype, np.integer):
        return v.astype(np.int64)
    return None


def _ints(v: np.ndarray | None) -> list[_Dim] | None:
    """A 1-D (or scalar) integer value as a list of ints and symbols, else None."""
    if v is None or v.ndim > 1:
        return None
    if v.dtype != object and not np.issubdtype(v.dtype, np.integer):
        return None
    return [x if isinstance(x, _Sym) else int(x) for x in v.reshape(-1).tolist()]


def _obj(v: np.ndarray) -> np.ndarray:
    return v if v.dtype == object else v.astype(object)


def _same_value(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None or a.shape != b.shape:
        return False
    return all(x == y for x, y in zip(a.reshape(-1).tolist(), b.reshape(-1).tolist()))


def _resolve(target: Sequence[_Dim], in_shape: Sequence[_Dim], allowzero: bool) -> list[_Dim] | None:
    """The output shape of Reshape(input of ``in_shape``, ``target``), or None when it is invalid."""
    out: list[_Dim] = []
    minus = [i for i, t in enumerate(target) if _is_int(t) and t == -1]
    if len(minus) > 1:
        return None
    for i, t in enumerate(target):
        if _is_int(t) and t == 0 and not allowzero:
            if i >= len(in_shape):
                return None
            out.append(in_shape[i])
        else:
            out.append(t)
    if minus:
        known = _prod(d for i, d in enumerate(out) if i != minus[0])
        if known == 0:
            return None
        total = _prod(in_shape)
        q = _div(total, known)
        if _is_int(q) and _is_int(total) and _is_int(known) and q * known != total:
            return None
        out[minus[0]] = q
    return out


def _eq_dims(a: Sequence[_Dim] | None, b: Sequence[_Dim] | None) -> bool:
    return a is not None and b is not None and len(a) == len(b) and all(x == y for x, y in zip(a, b))


# --------------------------------------------------------------------------------------------------
# tensor states

@dataclass
class _Val:
    """An unbatched tensor: its value in the original graph and in the batched graph (None: unknown);
    ``same``: both graphs provably compute the same tensor (constants, and anything not depending on
    the batch size)."""

    orig: np.ndarray | None
    bat: np.ndarray | None
    same: bool


_UNARY = {
    "Relu", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round",
    "Sign", "Erf", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh",
    "Softplus", "Softsign", "Elu", "Selu", "LeakyRelu", "HardSigmoid", "HardSwish", "ThresholdedRelu",
    "Celu", "Gelu", "Mish", "IsNaN", "IsInf", "Not", "Identity", "Cast", "CastLike", "Clip", "Dropout",
    "Shrink", "BitwiseNot",
}
_BROADCAST = {
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Equal", "Less", "Greater",
    "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod", "PRelu", "BitShift", "BitwiseAnd",
    "BitwiseOr", "BitwiseXor",
}
# ops on NC... tensors: the batch must be axis 0 of the input and stays axis 0 of the output
_SPATIAL = {
    "Conv", "ConvTranspose", "ConvInteger", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool",
    "GlobalMaxPool", "GlobalLpPool", "BatchNormalization", "InstanceNormalization", "LRN", "DepthToSpace",
    "SpaceToDepth", "Resize", "Upsample",
}
_REDUCE = {
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum",
    "ReduceLogSumExp", "ReduceSumSquare",
}
# ops whose values are computed symbolically when their inputs are small known tensors
_VALUE_OPS = {
    "Identity", "Cast", "Gather", "Concat", "Slice", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Add",
    "Sub", "Mul", "Div", "Neg", "ConstantOfShape", "Range", "Equal", "Where", "Max", "Min", "Floor", "Ceil",
    "Expand", "Constant", "Flatten",
}
_REFUSE_WHY = {
    "DynamicQuantizeLinear": "it computes one quantization scale and zero point over the whole tensor, so "
                             "in a batch every sample's result would depend on the other samples",
    "NonMaxSuppression": "it selects boxes across the batch (its output rows carry batch indices)",
    "NonZero": "its output mixes the indices of all samples",
    "If": "control flow (subgraphs) is not supported",
    "Loop": "control flow (subgraphs) is not supported",
    "Scan": "control flow (subgraphs) is not supported",
    "LSTM": "recurrent layers are not supported (their batch axis is 1)",
    "GRU": "recurrent layers are not supported (their batch axis is 1)",
    "RNN": "recurrent layers are not supported (their batch axis is 1)",
}

_INT64_MAX = np.iinfo(np.int64).max


class _Refuse(Exception):
    """Internal: a node cannot be batched (the editor adds model and node to the message)."""


# --------------------------------------------------------------------------------------------------


class _Editor:
    def __init__(self, model: onnx.ModelProto, label: str, dim_name: str) -> None:
        self.m = model
        self.g = model.graph
        self.label = label
        self.dim_name = dim_name
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.opsets = list(model.opset_import)
        self.bat: dict[str, int | None] = {}  # batched tensor -> reused size-1 axis k (None: new axis)
        self.val: dict[str, _Val] = {}  # unbatched tensors
        self.shape: dict[str, list[_Dim] | None] = {}  # per-sample (batch-1) shapes
        self.etype: dict[str, int] = {}
        self.symtab: dict[str, _Sym] = {}
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.names: set[str] = set()
        self.counter = itertools.count()
        self.unknown = itertools.count()
        self.nvec: str | None = None  # a 1-D int64 [N] tensor
        self.first_batched: str | None = None
        self.convert_cache: dict[tuple[str, int | None], str] = {}
        self.node_desc = ""
        self.graph_outputs = {o.name for o in self.g.output}

    # ---- helpers ---------------------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        while True:
            name = f"batchaxis/{hint}_{next(self.counter)}"
            if name not in self.names:
                self.names.add(name)
                return name

    def const(self, values: Sequence[int] | np.ndarray, dtype: Any = np.int64, hint: str = "const") -> str:
        name = self.fresh(hint)
        arr = np.asarray(values, dtype=dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        self.val[name] = _Val(arr, arr, True)
        self.shape[name] = list(arr.shape)
        self.etype[name] = helper.np_dtype_to_tensor_dtype(arr.dtype)
        return name

    def emit(self, op: str, inputs: Sequence[str], hint: str, **attrs: Any) -> str:
        out = self.fresh(hint)
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=self.fresh(op), **attrs))
        return out

    def emit_slice(self, x: str, start: int, end: int, axis: int) -> str:
        if self.opset < 10:
            return self.emit("Slice", [x], "slice", starts=[start], ends=[end], axes=[axis])
        return self.emit("Slice", [x, self.const([start]), self.const([end]), self.const([axis])], "slice")

    def emit_squeeze(self, x: str, axes: Sequence[int]) -> str:
        if self.opset < 13:
            return self.emit("Squeeze", [x], "squeeze", axes=list(axes))
        return self.emit("Squeeze", [x, self.const(list(axes))], "squeeze")

    def emit_unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        if self.opset < 13:
            return self.emit("Unsqueeze", [x], "unsqueeze", axes=list(axes))
        return self.emit("Unsqueeze", [x, self.const(list(axes))], "unsqueeze")

    def batch_vec(self) -> str:
        """A 1-D int64 tensor [N] (the batch size), computed once from the first batched input."""
        if self.nvec is None:
            assert self.first_batched is not None
            shape = self.emit("Shape", [self.first_batched], "shape")
            self.nvec = self.emit_slice(shape, 0, 1, 0)
        return self.nvec

    def refuse(self, why: str) -> _Refuse:
        return _Refuse(why)

    def rank(self, name: str) -> int:
        s = self.shape.get(name)
        if s is None:
            raise self.refuse(f"the shape of '{name}' is not known")
        return len(s)

    def sshape(self, name: str) -> list[_Dim]:
        s = self.shape.get(name)
        if s is None:
            raise self.refuse(f"the shape of '{name}' is not known")
        return s

    def bshape(self, name: str) -> list[_Dim]:
        """The batched shape of batched tensor ``name``."""
        s, k = self.sshape(name), self.bat[name]
        return [BATCH] + [d for i, d in enumerate(s) if i != k]

    @staticmethod
    def bmap(axis: int, k: int | None) -> int:
        """Per-sample axis -> batched axis (``axis`` is not ``k``)."""
        if k is None:
            return axis + 1
        return axis + 1 - (1 if axis > k else 0)

    def same(self, name: str, what: str = "") -> _Val:
        """The _Val of unbatched input ``name``; refuses batched or batch-size-dependent inputs."""
        if name in self.bat:
            raise self.refuse(f"its {what or 'input'} '{name}' is batched, which this op's rule does not allow")
        v = self.val.get(name)
        if v is None:
            raise self.refuse(f"input '{name}' is not known")
        if not v.same:
            raise self.refuse(f"its {what or 'input'} '{name}' depends on the batch size "
                              "(it is computed from a batched tensor's shape)")
        return v

    def attr(self, node: onnx.NodeProto, name: str, default: Any = None) -> Any:
        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    @staticmethod
    def with_attr(node: onnx.NodeProto, **attrs: Any) -> onnx.NodeProto:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for key, value in attrs.items():
            for i, a in enumerate(new.attribute):
                if a.name == key:
                    del new.attribute[i]
                    break
            if value is not None:
                new.attribute.append(helper.make_attribute(key, value))
        return new

    @staticmethod
    def with_inputs(node: onnx.NodeProto, inputs: Sequence[str]) -> onnx.NodeProto:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        del new.input[:]
        new.input.extend(inputs)
        return new

    def can_convert(self, name: str, target: int | None) -> bool:
        k = self.bat[name]
        if k == target or target is None:
            return True
        s = self.shape.get(name)
        return target == 0 and s is not None and len(s) > 0 and s[0] == 1

    def convert(self, name: str, target: int | None) -> str:
        """Batched tensor ``name`` in layout ``target`` (None: new axis, 0: the leading 1 reused)."""
        k = self.bat[name]
        if k == target:
            return name
        key = (name, target)
        if key in self.convert_cache:
            return self.convert_cache[key]
        if not self.can_convert(name, target):
            raise self.refuse(f"'{name}' (per-sample shape {_fmt(self.shape.get(name))}) cannot be laid out "
                              "with the batch on its leading axis")
        cur = name
        if k is not None:
            cur = self.emit_unsqueeze(cur, [1 + k])
        if target is not None:
            cur = self.emit_squeeze(cur, [1])
        self.bat[cur] = target
        self.shape[cur] = self.shape[name]
        self.etype[cur] = self.etype.get(name, 0)
        self.convert_cache[key] = cur
        return cur

    def unify(self, names: Sequence[str]) -> tuple[list[str], int | None]:
        """Bring batched tensors to one layout; returns the new names and the layout."""
        states = {self.bat[n] for n in names}
        if len(states) == 1:
            return list(names), states.pop()
        target: int | None = 0 if all(self.can_convert(n, 0) for n in names) else None
        return [self.convert(n, target) for n in names], target

    def set_bat(self, name: str, k: int | None) -> None:
        if name:
            self.bat[name] = k

    # ---- per-sample shape inference ------------------------------------------------------------

    def dim_to_proto(self, d: _Dim) -> int | str:
        if _is_int(d):
            return int(d)
        s = str(d)
        self.symtab[s] = d
        return s

    def type_proto(self, name: str) -> onnx.TypeProto | None:
        et = self.etype.get(name)
        if not et:
            return None
        s = self.shape.get(name)
        if s is None:
            return helper.make_tensor_type_proto(et, None)
        return helper.make_tensor_type_proto(et, [self.dim_to_proto(d) for d in s])

    def decode_type(self, tp: onnx.TypeProto) -> tuple[int, list[_Dim] | None]:
        if not tp.HasField("tensor_type"):
            return 0, None
        tt = tp.tensor_type
        if not tt.HasField("shape"):
            return tt.elem_type, None
        dims: list[_Dim] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            elif d.dim_param and d.dim_param in self.symtab:
                dims.append(self.symtab[d.dim_param])
            else:
                dims.append(_Sym(1, (f"?{next(self.unknown)}",)))
        return tt.elem_type, dims

    def infer(self, node: onnx.NodeProto) -> None:
        """Per-sample output types of ``node`` (original graph at batch 1), into etype/shape."""
        for out in node.output:
            self.shape.setdefault(out, None)
        types: dict[str, onnx.TypeProto] = {}
        data: dict[str, TensorProto] = {}
        for name in node.input:
            if not name:
                continue
            tp = self.type_proto(name)
            if tp is None:
                return
            types[name] = tp
            v = self.val.get(name)
            if v is not None and v.orig is not None and v.orig.size <= 4096:
                st = _static(v.orig)
                et = self.etype.get(name)
                if st is not None and et in _INT_TYPES:
                    data[name] = numpy_helper.from_array(st.astype(helper.tensor_dtype_to_np_dtype(et)), name)
                elif v.orig.dtype != object and st is None:
                    data[name] = numpy_helper.from_array(v.orig, name)
        try:
            schema = onnx.defs.get_schema(node.op_type, self.opset_for(node.domain), node.domain)
            outs = onnx.shape_inference.infer_node_outputs(schema, node, types, data, opset_imports=self.opsets)
        except Exception:  # no schema, or inference failed: outputs stay unknown
            return
        for name, tp in outs.items():
            et, dims = self.decode_type(tp)
            if et:
                self.etype[name] = et
            self.shape[name] = dims

    def opset_for(self, domain: str) -> int:
        for o in self.opsets:
            if o.domain == domain or (domain in ("", "ai.onnx") and o.domain in ("", "ai.onnx")):
                return o.version
        return 1

    # ---- value evaluation ----------------------------------------------------------------------

    def eval_value(self, node: onnx.NodeProto, env: str) -> list[np.ndarray | None]:
        """Values of ``node``'s outputs from its inputs' values in ``env`` ('orig' or 'bat')."""
        op = node.op_type
        ins: list[np.ndarray | None] = []
        for name in node.input:
            if not name:
                ins.append(None)
                continue
            v = self.val.get(name)
            ins.append(None if v is None else (v.orig if env == "orig" else v.bat))
        try:
            out = _evaluate(op, node, ins, self.opset, self)
        except Exception:  # values we cannot compute stay unknown
            return [None] * len(node.output)
        arrays = [None if o is None else (o if isinstance(o, np.ndarray) else np.array(o, dtype=object)
                                          if isinstance(o, _Sym) else np.asarray(o)) for o in out]
        return [o if o is not None and o.size <= _MAX_VALUE else None for o in arrays]

    def shape_value(self, name: str, env: str) -> list[_Dim] | None:
        """The shape of tensor ``name`` in ``env`` (per sample, or batched)."""
        if name in self.bat:
            return self.sshape(name) if env == "orig" else self.bshape(name)
        v = self.val.get(name)
        if v is None:
            return None
        if v.same or env == "orig":
            return self.shape.get(name)
        return None if v.bat is None else list(v.bat.shape)

    # ---- the pass ------------------------------------------------------------------------------

    def run(self) -> onnx.ModelProto:
        g = self.g
        init_names = {i.name for i in g.initializer}
        self.names = {n for node in g.node for n in [*node.input, *node.output, node.name]}
        self.names |= init_names | {i.name for i in g.input} | {o.name for o in g.output}
        for init in g.initializer:
            arr = numpy_helper.to_array(init) if _numel(init.dims) <= _MAX_VALUE else None
            self.val[init.name] = _Val(arr, arr, True)
            self.shape[init.name] = [int(d) for d in init.dims]
            self.etype[init.name] = init.data_type
        batched_inputs: list[onnx.ValueInfoProto] = []
        for inp in g.input:
            if inp.name in init_names:
                continue
            et, dims = self.decode_type(inp.type)
            self.etype[inp.name] = et
            if dims is not None:
                # named dims of the model are atoms of their own name
                for i, d in enumerate(inp.type.tensor_type.shape.dim):
                    if d.dim_param:
                        sym = _Sym(1, (f"'{d.dim_param}'",))
                        self.symtab[str(sym)] = sym
                        dims[i] = sym
            if _is_batched_input(inp):
                assert dims is not None
                dims[0] = 1
                self.bat[inp.name] = 0
                batched_inputs.append(inp)
                if self.first_batched is None:
                    self.first_batched = inp.name
            else:
                self.val[inp.name] = _Val(None, None, True)
            self.shape[inp.name] = dims
        if not batched_inputs:
            raise BatchAxisError(f"{self.label}: no graph input has a leading dim of 1 (or a symbolic one) "
                                 "that could become the batch axis")
        for idx, node in enumerate(g.node):
            self.node_desc = _describe(node, idx)
            try:
                self.visit(node)
            except _Refuse as exc:
                raise BatchAxisError(f"{self.label}: {self.node_desc}: {exc}") from None
        self.finish_outputs()
        return self.build(batched_inputs)

    def visit(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            raise self.refuse("control flow (subgraphs) is not supported")
        self.infer(node)
        if op in ("Reshape", "ConstantOfShape", "Expand", "Resize"):
            self.override_shape(node)
        ins = [n for n in node.input if n]
        batched = [n for n in ins if n in self.bat]
        if not batched:
            self.visit_unbatched(node)
            return
        if node.domain not in ("", "ai.onnx"):
            raise self.refuse(f"op domain '{node.domain}' has no batching rules")
        if op in _REFUSE_WHY:
            raise self.refuse(_REFUSE_WHY[op])
        rule = getattr(self, f"r_{op}", None)
        if rule is None:
            if op in _UNARY:
                rule = self.r_unary
            elif op in _BROADCAST:
                rule = self.r_broadcast
            elif op in _SPATIAL:
                rule = self.r_spatial
            elif op in _REDUCE or op in ("ArgMax", "ArgMin"):
                rule = self.r_reduce
            else:
                raise self.refuse(f"op {op} has no batching rule here, so it is not known to be batch-safe")
        rule(node)

    def override_shape(self, node: onnx.NodeProto) -> None:
        """Per-sample output shapes that ONNX inference leaves open when a shape input holds symbols."""
        out = node.output[0]
        if node.op_type == "Resize":
            if self.opset < 11 or len(node.input) < 4 or not node.input[3] or self.attr(node, "axes") is not None:
                return
            v = self.val.get(node.input[3])
        else:
            v = self.val.get(node.input[1] if node.op_type != "ConstantOfShape" else node.input[0])
        target = _ints(v.orig) if v is not None else None
        if target is None:
            return
        if node.op_type in ("ConstantOfShape", "Resize"):
            self.shape[out] = target
        elif node.op_type == "Reshape":
            s = self.shape.get(node.input[0])
            if s is not None:
                res = _resolve(target, s, bool(self.attr(node, "allowzero", 0)))
                if res is not None:
                    self.shape[out] = res
        else:
            s = self.shape.get(node.input[0])
            if s is not None:
                b = _broadcast_shapes([s, target])
                if b is not None:
                    self.shape[out] = b

    def visit_unbatched(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        ins = [n for n in node.input if n]
        vals = [self.val[n] for n in ins if n in self.val]
        all_same = all(v.same for v in vals) and len(vals) == len(ins)
        if op == "Shape" or op == "Size":
            self.value_of_shape(node)
            return
        if all_same:
            outs = self.eval_value(node, "orig") if op in _VALUE_OPS else [None] * len(node.output)
            for name, value in zip(node.output, outs):
                if name:
                    self.val[name] = _Val(value, value, True)
                    if value is not None:
                        self.shape[name] = list(value.shape)
            self.nodes.append(node)
            return
        if op in ("ConstantOfShape", "Expand") and self.maybe_batched_fill(node):
            return
        if op not in _VALUE_OPS or node.domain not in ("", "ai.onnx"):
            bad = next(n for n in ins if not self.val[n].same)
            raise self.refuse(f"it uses '{bad}', which depends on the batch size (it is computed from a "
                              f"batched tensor's shape), and op {op} is not tracked for that")
        self.nodes.append(node)
        orig, bat = self.eval_value(node, "orig"), self.eval_value(node, "bat")
        for name, o, b in zip(node.output, orig, bat):
            if name:
                self.val[name] = _Val(o, b, _same_value(o, b))
                if o is not None:
                    self.shape[name] = list(o.shape)

    def value_of_shape(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        o, b = self.shape_value(x, "orig"), self.shape_value(x, "bat")
        out = node.output[0]
        if node.op_type == "Size":
            ov = None if o is None else np.array(_prod(o), dtype=object)
            bv = None if b is None else np.array(_prod(b), dtype=object)
        else:
            start, end = self.attr(node, "start", 0), self.attr(node, "end", None)
            ov = None if o is None else np.array(o[start:end] if end is not None else o[start:], dtype=object)
            bv = None if b is None else np.array(b[start:end] if end is not None else b[start:], dtype=object)
            if ov is not None and ov.ndim == 0:
                ov = ov.reshape(0)
            if bv is not None and bv.ndim == 0:
                bv = bv.reshape(0)
        same = x not in self.bat and (self.val[x].same if x in self.val else False)
        self.val[out] = _Val(ov, bv, same or _same_value(ov, bv))
        self.nodes.append(node)

    def maybe_batched_fill(self, node: onnx.NodeProto) -> bool:
        """ConstantOfShape / Expand of an unbatched tensor to a shape [N, ...] computed from a batched
        tensor: the output is batched (every sample gets the same values)."""
        shape_in = node.input[0] if node.op_type == "ConstantOfShape" else node.input[1]
        if node.op_type == "Expand":
            self.same(node.input[0], "data input")
        v = self.val[shape_in]
        o, b = _ints(v.orig), _ints(v.bat)
        out_shape = self.shape.get(node.output[0])
        if o is None or b is None or out_shape is None or len(o) != len(out_shape) or not o:
            return False
        if o[0] != 1 or b[0] != BATCH or not _eq_dims(o[1:], b[1:]):
            return False
        self.nodes.append(node)
        self.bat[node.output[0]] = 0
        return True

    # ---- batching rules ------------------------------------------------------------------------

    def keep(self, node: onnx.NodeProto, k: int | None) -> None:
        self.nodes.append(node)
        for out in node.output:
            self.set_bat(out, k)

    def r_unary(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        if x not in self.bat:
            other = next(n for n in node.input if n in self.bat)
            raise self.refuse(f"only its first input may be batched, not '{other}'")
        for name in node.input[1:]:
            if name:
                self.same(name)
        if node.op_type == "Dropout" and self.opset >= 12 and len(node.input) > 2 and node.input[2]:
            tm = _static(self.val[node.input[2]].orig)
            if tm is None or tm.any():
                raise self.refuse("dropout in training mode is random per element")
        self.keep(node, self.bat[x])

    def r_QuantizeLinear(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        if x not in self.bat:
            raise self.refuse("only its first input may be batched")
        self.same(node.input[1], "scale")
        for name in node.input[2:]:
            if name:
                self.same(name)
        if self.attr(node, "block_size", 0):
            raise self.refuse("blocked quantization is not supported")
        k = self.bat[x]
        scale_shape = self.shape.get(node.input[1])
        per_axis = scale_shape is None or (len(scale_shape) >= 1 and _prod(scale_shape) != 1)
        if per_axis and self.opset >= 13:
            r = self.rank(x)
            axis = self.attr(node, "axis", 1) % r
            if axis == k:
                raise self.refuse("it quantizes per channel along the batch axis")
            new_axis = self.bmap(axis, k)
            if new_axis != axis:
                node = self.with_attr(node, axis=new_axis)
        elif per_axis:
            raise self.refuse("per-axis quantization needs opset 13")
        self.keep(node, k)

    r_DequantizeLinear = r_QuantizeLinear

    def r_broadcast(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        R = self.rank(out)
        idx_b = [i for i, n in enumerate(node.input) if n and n in self.bat]
        for i in idx_b:
            if self.rank(node.input[i]) != R:
                raise self.refuse(f"its batched input '{node.input[i]}' has a lower rank than the output, so "
                                  "the batch axes would not line up")
        names, k = self.unify([node.input[i] for i in idx_b])
        inputs = list(node.input)
        for i, n in zip(idx_b, names):
            inputs[i] = n
        for i, name in enumerate(node.input):
            if not name or i in idx_b:
                continue
            self.same(name)
            if k is None:
                continue
            c = self.sshape(name)
            rc = len(c)
            if R - rc > k:
                continue
            cp = [1] * (R - rc) + list(c)
            if cp[k] != 1:
                raise self.refuse(f"its input '{name}' (shape {_fmt(c)}) has size {cp[k]} on the batch axis, so "
                                  "it would broadcast against the batch")
            if k == 0 and rc == R:
                continue
            rest = [d for j, d in enumerate(cp) if j != k]
            if not all(_is_int(d) for d in rest):
                raise self.refuse(f"its input '{name}' (shape {_fmt(c)}) would need a reshape to follow the "
                                  "batch layout, and its shape is not fixed")
            inputs[i] = self.emit("Reshape", [name, self.const([1] + rest)], "reshape")
        self.keep(self.with_inputs(node, inputs) if inputs != list(node.input) else node, k)

    def r_spatial(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        x = node.input[0]
        if x not in self.bat:
            other = next(n for n in node.input if n in self.bat)
            raise self.refuse(f"only its data input may be batched, not '{other}'")
        if not self.can_convert(x, 0):
            raise self.refuse(f"it needs the batch as axis 0 of '{x}', whose per-sample shape "
                              f"{_fmt(self.shape.get(x))} has no leading 1")
        inputs = list(node.input)
        inputs[0] = self.convert(x, 0)
        for i, name in enumerate(node.input[1:], 1):
            if not name:
                continue
            if op == "Resize" and i == 3 or op == "Resize" and self.opset == 10 and i == 1:
                continue
            if op == "Upsample" and i == 1:
                continue
            self.same(name)
        if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
            raise self.refuse("its indices output counts over the whole batched tensor, not per sample")
        if op == "BatchNormalization":
            if self.attr(node, "training_mode", 0) or any(node.output[1:]):
                raise self.refuse("batch normalization in training mode uses statistics over the batch")
        if op in ("Resize", "Upsample"):
            inputs = self.resize_inputs(node, inputs)
        for out in node.output[:1]:
            # these ops keep dim 0 (the batch); inference may have lost it with symbolic sizes
            s = self.shape.get(out)
            if s is not None and s and not _is_int(s[0]):
                self.shape[out] = [1, *s[1:]]
        self.keep(self.with_inputs(node, inputs) if inputs != list(node.input) else node, 0)

    def resize_inputs(self, node: onnx.NodeProto, inputs: list[str]) -> list[str]:
        op = node.op_type
        if self.attr(node, "mode", b"nearest") in (b"tf_crop_and_resize", "tf_crop_and_resize"):
            raise self.refuse("tf_crop_and_resize is not supported")
        axes = self.attr(node, "axes", None)
        r = self.rank(node.input[0])
        if axes is not None:
            axes = [a % r for a in axes]
            if 0 not in axes:
                return inputs
            pos = axes.index(0)
        else:
            pos = 0
        if op == "Upsample" and self.opset < 9:
            scales = self.attr(node, "scales", None)
            if scales is None or scales[0] != 1:
                raise self.refuse("it scales the batch axis")
            return inputs
        scale_idx = 1 if (op == "Upsample" or self.opset == 10) else 2
        if len(node.input) > scale_idx and node.input[scale_idx]:
            sv = self.same(node.input[scale_idx], "scales").orig
            if sv is not None and sv.size == 0:
                pass
            elif sv is None:
                raise self.refuse(f"its scales '{node.input[scale_idx]}' are not constant")
            elif float(np.asarray(sv, dtype=np.float64).reshape(-1)[pos]) != 1.0:
                raise self.refuse("it scales the batch axis")
        if op == "Resize" and len(node.input) > 3 and node.input[3]:
            name = node.input[3]
            if name in self.bat:
                raise self.refuse(f"its sizes '{name}' are batched")
            v = self.val[name]
            o, b = _ints(v.orig), _ints(v.bat)
            if o is None or o[pos] != 1:
                raise self.refuse(f"its sizes '{name}' are not known, or not 1 on the batch axis")
            if b is not None and b[pos] == BATCH and _eq_dims(o[:pos] + o[pos + 1:], b[:pos] + b[pos + 1:]):
                return inputs
            if not v.same or pos != 0:
                raise self.refuse(f"its sizes '{name}' are computed in a way that cannot be rewritten for a batch")
            rest = self.emit_slice(name, 1, int(_INT64_MAX), 0)
            inputs[3] = self.emit("Concat", [self.batch_vec(), rest], "sizes", axis=0)
        return inputs

    def r_Transpose(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        perm = list(self.attr(node, "perm", list(range(r))[::-1]))
        if k is None:
            new_perm, k_out = [0] + [p + 1 for p in perm], None
        else:
            new_perm, k_out = [0] + [self.bmap(p, k) for p in perm if p != k], perm.index(k)
        if new_perm != perm:
            node = self.with_attr(node, perm=new_perm)
        self.keep(node, k_out)

    def reshape_target(self, x: str, out_shape: list[_Dim], allowzero: bool,
                       out_name: str) -> tuple[list[int], int | None]:
        """The batched Reshape target for per-sample output ``out_shape`` and its layout: the first size-1
        dim carries the batch (a graph output only reuses a leading 1), else a new leading axis."""
        ones = [i for i, d in enumerate(out_shape) if _is_int(d) and d == 1]
        if out_name in self.graph_outputs:
            ones = [i for i in ones if i == 0]
        k_out = ones[0] if ones else None
        rest = [d for i, d in enumerate(out_shape) if i != k_out]
        in_b = self.bshape(x)
        target: list[int] = []
        for i, d in enumerate(rest, 1):
            if _is_int(d) and d == 0 and not allowzero:
                raise self.refuse(f"its per-sample output shape {_fmt(out_shape)} has an empty dim")
            if _is_int(d):
                target.append(int(d))
            elif not allowzero and i < len(in_b) and in_b[i] == d:
                target.append(0)
            else:
                target.append(-1)
        if target.count(-1) > 1:
            raise self.refuse(f"its per-sample output shape {_fmt(out_shape)} has more than one dynamic dim that "
                              "cannot be copied from the input")
        if allowzero:
            if -1 in target or not all(_is_int(d) for d in rest):
                raise self.refuse("with allowzero=1 and a dynamic dim the batch entry cannot be written")
            return [-1] + target, k_out
        return [0] + target, k_out

    def r_Reshape(self, node: onnx.NodeProto) -> None:
        x, t = node.input[0], node.input[1]
        if t in self.bat:
            raise self.refuse(f"its target shape '{t}' is batched")
        allowzero = bool(self.attr(node, "allowzero", 0))
        v = self.val[t]
        to = _ints(v.orig)
        s = self.sshape(x)
        if to is None:
            raise self.refuse(f"its target shape '{t}' is not known, so the batch entry cannot be placed")
        out_shape = _resolve(to, s, allowzero)
        if out_shape is None:
            raise self.refuse(f"its target {_fmt(to)} does not fit the per-sample input shape {_fmt(s)}")
        self.shape[node.output[0]] = out_shape
        new_target, k_out = self.reshape_target(x, out_shape, allowzero, node.output[0])
        in_b = self.bshape(x)
        want = _resolve(new_target, in_b, allowzero)
        tb = _ints(v.bat)
        if tb is not None and _eq_dims(_resolve(tb, in_b, allowzero), want):
            self.keep(node, k_out)  # the target is already computed for the batch (Shape -> ... -> Reshape)
            return
        self.keep(self.with_inputs(node, [x, self.const(new_target, hint="shape")]), k_out)

    def r_Flatten(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        s = self.sshape(x)
        axis = self.attr(node, "axis", 1) % (len(s) + 1) if len(s) else 0
        out_shape = [_prod(s[:axis]), _prod(s[axis:])]
        self.shape[node.output[0]] = out_shape
        if self.bat[x] == 0 and axis == 1:
            self.keep(node, 0)
            return
        new_target, k_out = self.reshape_target(x, out_shape, False, node.output[0])
        shape = self.const(new_target, hint="shape")
        self.keep(helper.make_node("Reshape", [x, shape], list(node.output), name=node.name or self.fresh("Reshape")),
                  k_out)

    def r_Squeeze(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        s = self.sshape(x)
        r = len(s)
        axes = self.axes_of(node, r, input_index=1, attr_from=13)
        if axes is None:
            if not all(_is_int(d) for d in s):
                raise self.refuse(f"it squeezes every size-1 dim of '{x}' (shape {_fmt(s)}), and not all dims "
                                  "are known")
            axes = [i for i, d in enumerate(s) if d == 1]
        if k is None or k in axes:
            k_out = None
        else:
            k_out = k - sum(1 for a in axes if a < k)
        if self.opset < 13 and axes != sorted(axes):
            # ONNX shape inference and ONNX Runtime disagree on Squeeze-1/11 with unsorted axes
            raise self.refuse(f"its axes {axes} are not sorted, and runtimes disagree on what that means")
        self.shape[node.output[0]] = [d for i, d in enumerate(s) if i not in axes]
        new_axes = sorted(self.bmap(a, k) for a in axes if a != k)
        if not new_axes:
            self.keep(helper.make_node("Identity", [x], [node.output[0]], name=node.name or self.fresh("Identity")),
                      k_out)
            return
        self.keep(self.set_axes(node, new_axes, input_index=1, attr_from=13), k_out)

    def r_Unsqueeze(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        axes_raw = self.axes_of(node, None, input_index=1, attr_from=13)
        if axes_raw is None:
            raise self.refuse("its axes are not known")
        ro = r + len(axes_raw)
        axes = sorted(a % ro for a in axes_raw)
        kept = [p for p in range(ro) if p not in axes]
        out_shape: list[_Dim] = [1] * ro
        for p, d in zip(kept, self.sshape(x)):
            out_shape[p] = d
        self.shape[node.output[0]] = out_shape
        k_out = None if k is None else kept[k]
        new_axes = sorted(self.bmap(a, k_out) for a in axes)
        self.keep(self.set_axes(node, new_axes, input_index=1, attr_from=13), k_out)

    def axes_of(self, node: onnx.NodeProto, rank: int | None, input_index: int, attr_from: int,
                attr_name: str = "axes") -> list[int] | None:
        """Axes from the attribute (opset < attr_from) or from input ``input_index``; None when absent."""
        if self.opset < attr_from:
            axes = self.attr(node, attr_name, None)
            raw = None if axes is None else list(axes)
        else:
            if len(node.input) <= input_index or not node.input[input_index]:
                return None
            v = self.same(node.input[input_index], "axes")
            st = _static(v.orig)
            if st is None:
                raise self.refuse(f"its axes '{node.input[input_index]}' are not constant")
            raw = [int(a) for a in st.reshape(-1)]
        if raw is None:
            return None
        return [a % rank for a in raw] if rank is not None else raw

    def set_axes(self, node: onnx.NodeProto, axes: list[int], input_index: int, attr_from: int,
                 attr_name: str = "axes") -> onnx.NodeProto:
        if self.opset < attr_from:
            return self.with_attr(node, **{attr_name: list(axes)})
        inputs = list(node.input)
        while len(inputs) <= input_index:
            inputs.append("")
        inputs[input_index] = self.const(axes, hint="axes")
        return self.with_inputs(node, inputs)

    def r_Concat(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        R = self.rank(out)
        axis = self.attr(node, "axis", 0) % R
        idx_b = [i for i, n in enumerate(node.input) if n in self.bat]
        names, k = self.unify([node.input[i] for i in idx_b])
        if k == axis:
            raise self.refuse("it concatenates along the batch axis")
        inputs = list(node.input)
        for i, n in zip(idx_b, names):
            inputs[i] = n
        for i, name in enumerate(node.input):
            if not name or i in idx_b:
                continue
            self.same(name)
            c = self.sshape(name)
            if k is None:
                cb = self.emit_unsqueeze(name, [0])
            elif k == 0:
                if c[0] != 1:
                    raise self.refuse(f"its unbatched input '{name}' has shape {_fmt(c)}")
                cb = name
            else:
                rest = [d for j, d in enumerate(c) if j != k]
                if c[k] != 1 or not all(_is_int(d) for d in rest):
                    raise self.refuse(f"its unbatched input '{name}' (shape {_fmt(c)}) cannot follow the batch layout")
                cb = self.emit("Reshape", [name, self.const([1] + rest)], "reshape")
            rb = R + (1 if k is None else 0)
            target = self.emit("Concat", [self.batch_vec(), self.const([1] * (rb - 1))], "expand_shape", axis=0)
            inputs[i] = self.emit("Expand", [cb, target], "expand")
        new_axis = self.bmap(axis, k)
        node = self.with_inputs(node, inputs) if inputs != list(node.input) else node
        if new_axis != self.attr(node, "axis", 0):
            node = self.with_attr(node, axis=new_axis)
        self.keep(node, k)

    def r_Split(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        axis = self.attr(node, "axis", 0) % r
        if axis == k:
            raise self.refuse("it splits along the batch axis")
        for name in node.input[1:]:
            if name:
                self.same(name, "split sizes")
        new_axis = self.bmap(axis, k)
        if new_axis != self.attr(node, "axis", 0):
            node = self.with_attr(node, axis=new_axis)
        self.keep(node, k)

    def r_Gather(self, node: onnx.NodeProto) -> None:
        data, idx = node.input[0], node.input[1]
        if data not in self.bat:
            raise self.refuse(f"its indices '{idx}' are batched (a lookup per sample is not supported)")
        iv = self.same(idx, "indices")
        k = self.bat[data]
        r = self.rank(data)
        ri = self.rank(idx)
        axis = self.attr(node, "axis", 0) % r
        if axis == k:
            st = _static(iv.orig)
            if st is None or not np.isin(st, (0, -1)).all() or st.size != 1:
                raise self.refuse("it gathers along the batch axis")
            k_out = None if ri == 0 else k
            self.keep(helper.make_node("Identity", [data], [node.output[0]], name=node.name or self.fresh("Identity")),
                      k_out)
            return
        if k is None:
            k_out = None
        elif k < axis:
            k_out = k
        else:
            k_out = k + ri - 1
        new_axis = self.bmap(axis, k)
        if new_axis != self.attr(node, "axis", 0):
            node = self.with_attr(node, axis=new_axis)
        self.keep(node, k_out)

    def r_Slice(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        if self.opset < 10:
            starts = list(self.attr(node, "starts", []))
            ends = list(self.attr(node, "ends", []))
            axes = list(self.attr(node, "axes", list(range(len(starts)))))
            steps: list[int] | None = [1] * len(starts)
        else:
            for name in node.input[1:]:
                if name:
                    self.same(name, "slice parameter")

            def value(i: int) -> list[int] | None:
                if len(node.input) <= i or not node.input[i]:
                    return None
                st = _static(self.val[node.input[i]].orig)
                return None if st is None else [int(a) for a in st.reshape(-1)]

            starts_v, ends_v = value(1), value(2)
            n_axes_shape = self.shape.get(node.input[1])
            n = len(starts_v) if starts_v is not None else (
                int(n_axes_shape[0]) if n_axes_shape and _is_int(n_axes_shape[0]) else None)
            axes_v = value(3)
            if axes_v is None and len(node.input) > 3 and node.input[3]:
                raise self.refuse("its axes are not constant")
            if axes_v is None:
                if n is None:
                    raise self.refuse("its axes are not known")
                axes_v = list(range(n))
            steps_v = value(4) if len(node.input) > 4 and node.input[4] else [1] * len(axes_v)
            starts, ends, axes, steps = starts_v, ends_v, axes_v, steps_v  # type: ignore[assignment]
        axes = [a % r for a in axes]
        drop: list[int] = []
        if k is not None and k in axes:
            j = axes.index(k)
            if starts is None or ends is None or steps is None:
                raise self.refuse("it slices the batch axis with parameters that are not constant")
            if list(range(1)[slice(starts[j], ends[j], steps[j])]) != [0]:
                raise self.refuse("it slices the batch axis")
            drop = [j]
        keep_idx = [j for j in range(len(axes)) if j not in drop]
        new_axes = [self.bmap(axes[j], k) for j in keep_idx]
        if not keep_idx:
            self.keep(helper.make_node("Identity", [x], [node.output[0]], name=node.name or self.fresh("Identity")), k)
            return
        if self.opset < 10:
            assert starts is not None and ends is not None
            new = self.with_attr(node, starts=[starts[j] for j in keep_idx], ends=[ends[j] for j in keep_idx],
                                 axes=new_axes)
            self.keep(new, k)
            return
        given_axes = len(node.input) > 3 and node.input[3]
        if not drop:
            if given_axes and new_axes == _static(self.val[node.input[3]].orig).reshape(-1).tolist():
                self.keep(node, k)
                return
            if not given_axes and new_axes == list(range(len(axes))):
                self.keep(node, k)
                return
            dtype = helper.tensor_dtype_to_np_dtype(self.etype.get(node.input[1], TensorProto.INT64))
            inputs = list(node.input) + [""] * (4 - len(node.input))
            inputs[3] = self.const(new_axes, dtype=dtype, hint="axes")
            self.keep(self.with_inputs(node, inputs), k)
            return
        if starts is None or ends is None or steps is None:
            raise self.refuse("it slices the batch axis with parameters that are not constant")
        dtype = helper.tensor_dtype_to_np_dtype(self.etype.get(node.input[1], TensorProto.INT64))
        inputs = [x, self.const([starts[j] for j in keep_idx], dtype=dtype, hint="starts"),
                  self.const([ends[j] for j in keep_idx], dtype=dtype, hint="ends"),
                  self.const(new_axes, dtype=dtype, hint="axes"),
                  self.const([steps[j] for j in keep_idx], dtype=dtype, hint="steps")]
        self.keep(self.with_inputs(node, inputs), k)

    def r_reduce(self, node: onnx.NodeProto) -> None:
        op = node.op_type
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        keepdims = self.attr(node, "keepdims", 1)
        for name in node.input[1:]:
            if name:
                self.same(name, "axes")
        if op in ("ArgMax", "ArgMin"):
            axes: list[int] | None = [self.attr(node, "axis", 0) % r]
            mode = "axis"
        else:
            attr_from = 13 if op == "ReduceSum" else 18
            axes = self.axes_of(node, r, input_index=1, attr_from=attr_from)
            mode = "attr" if self.opset < attr_from else "input"
            if axes is not None and not axes:
                axes = None
            if axes is None:
                if self.attr(node, "noop_with_empty_axes", 0):
                    self.keep(node, k)
                    return
                raise self.refuse("it reduces over all axes, the batch axis included")
        assert axes is not None
        if k in axes:
            raise self.refuse("it reduces over the batch axis")
        new_axes = sorted(self.bmap(a, k) for a in axes)
        if keepdims or k is None:
            k_out = k
        else:
            k_out = k - sum(1 for a in axes if a < k)
        if new_axes != sorted(axes):
            if mode == "axis":
                node = self.with_attr(node, axis=new_axes[0])
            else:
                node = self.set_axes(node, new_axes, input_index=1, attr_from=13 if op == "ReduceSum" else 18)
        self.keep(node, k_out)

    def r_Softmax(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        default = -1 if self.opset >= 13 else 1
        axis = self.attr(node, "axis", default) % r
        # before opset 13 the op flattens to [prod(dims[:axis]), prod(dims[axis:])]: the batch lands in
        # the first factor, and the reused size-1 axis (if at or after ``axis``) leaves the second unchanged
        if axis == k and (self.opset >= 13 or axis + 1 >= r):
            raise self.refuse("it normalises along the batch axis")
        new_axis = self.bmap(axis + 1, k) if axis == k else self.bmap(axis, k)
        if new_axis != axis:
            node = self.with_attr(node, axis=new_axis)
        self.keep(node, k)

    r_LogSoftmax = r_Softmax
    r_Hardmax = r_Softmax

    def r_LayerNormalization(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        if x not in self.bat:
            raise self.refuse("only its data input may be batched")
        k = self.bat[x]
        r = self.rank(x)
        axis = self.attr(node, "axis", -1) % r
        for name in node.input[1:]:
            if name:
                self.same(name)
        if any(node.output[1:]):
            raise self.refuse("its mean / inverse-std outputs are not supported")
        if k is not None and k >= axis:
            raise self.refuse("it normalises over the batch axis")
        new_axis = self.bmap(axis, k)
        if new_axis != axis:
            node = self.with_attr(node, axis=new_axis)
        self.keep(node, k)

    def r_MatMul(self, node: onnx.NodeProto) -> None:
        a, b = node.input[0], node.input[1]
        if b in self.bat:
            raise self.refuse("its second input is batched (only A @ constant-B is supported)")
        self.same(b)
        k = self.bat[a]
        ra, rb = self.rank(a), self.rank(b)
        if k is None:
            if rb > max(ra, 2):
                raise self.refuse("the batch axis would not line up with the other input's batch dims")
            self.keep(node, None)
            return
        if ra >= 2 and k == ra - 1:
            raise self.refuse("its batch axis is the contracted axis")
        if k == ra - 2:
            if ra != 2 or rb > 2:
                raise self.refuse("its batch axis is the row axis of a batched matrix product")
            self.keep(node, k)
            return
        # k is one of A's leading (broadcast) dims
        if rb > ra - k - 1:
            cb = self.sshape(b)
            if not (k == 0 and rb == ra and cb[0] == 1):
                raise self.refuse(f"its second input '{b}' (shape {_fmt(cb)}) would broadcast against the batch")
        self.keep(node, k)

    def r_Gemm(self, node: onnx.NodeProto) -> None:
        a = node.input[0]
        if a not in self.bat:
            raise self.refuse("only its first input may be batched")
        for name in node.input[1:]:
            if name:
                self.same(name)
        k = self.bat[a]
        trans_a = self.attr(node, "transA", 0)
        if len(node.input) > 2 and node.input[2]:
            c = self.sshape(node.input[2])
            if len(c) == 2 and c[0] != 1:
                raise self.refuse(f"its bias '{node.input[2]}' (shape {_fmt(c)}) has rows")
        if trans_a == 0 and k == 0:
            self.keep(node, 0)
        elif trans_a == 1 and k == 1:
            self.keep(self.with_attr(node, transA=0), 0)
        else:
            raise self.refuse("its matrix A has no size-1 row axis to carry the batch")

    def r_Pad(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        if self.opset < 11:
            pads = list(self.attr(node, "paddings" if self.opset < 2 else "pads", []))
            axes = list(range(r))
        else:
            pv = self.same(node.input[1], "pads")
            for name in node.input[2:]:
                if name:
                    self.same(name)
            st = _static(pv.orig)
            if st is None:
                raise self.refuse(f"its pads '{node.input[1]}' are not known")
            pads = [int(p) for p in st.reshape(-1)]
            axes = list(range(r))
            if len(node.input) > 3 and node.input[3]:
                ax = _static(self.val[node.input[3]].orig)
                if ax is None:
                    raise self.refuse("its axes are not constant")
                axes = [int(a) % r for a in ax.reshape(-1)]
        n = len(axes)
        begin = dict(zip(axes, pads[:n]))
        end = dict(zip(axes, pads[n:]))
        if k is not None and (begin.get(k, 0) or end.get(k, 0)):
            raise self.refuse("it pads the batch axis")
        if k == 0 and axes == list(range(r)):
            self.keep(node, k)
            return
        rb = r + (1 if k is None else 0)
        full_b, full_e = [0] * rb, [0] * rb
        for a in range(r):
            if a == k:
                continue
            full_b[self.bmap(a, k)] = begin.get(a, 0)
            full_e[self.bmap(a, k)] = end.get(a, 0)
        if self.opset < 11:
            self.keep(self.with_attr(node, **{"paddings" if self.opset < 2 else "pads": full_b + full_e}), k)
            return
        inputs = list(node.input[:3]) + [""] * (3 - len(node.input[:3]))
        inputs[1] = self.const(full_b + full_e, hint="pads")
        while inputs and inputs[-1] == "":
            inputs.pop()
        self.keep(self.with_inputs(node, inputs), k)

    def r_Expand(self, node: onnx.NodeProto) -> None:
        x, t = node.input[0], node.input[1]
        if t in self.bat:
            raise self.refuse("its shape input is batched")
        k = self.bat[x]
        s = self.sshape(x)
        r = len(s)
        v = self.val[t]
        to = _ints(v.orig)
        if to is None:
            raise self.refuse(f"its shape '{t}' is not known")
        if len(to) > r:
            raise self.refuse("it adds leading dims in front of the batch axis")
        tp = [1] * (r - len(to)) + to
        if k is None:
            want = [1] + tp
            k_out: int | None = None
        elif _is_int(tp[k]) and tp[k] == 1:
            want = [1] + [d for i, d in enumerate(tp) if i != k]
            k_out = k
        else:
            x = self.convert(x, None)
            want, k_out = [1] + tp, None
        tb = _ints(v.bat)
        if tb is not None and _eq_dims([1] * (len(want) - len(tb)) + tb, want) and x == node.input[0]:
            self.keep(node, k_out)
            return
        if not all(_is_int(d) for d in want):
            raise self.refuse(f"its shape '{t}' would need rewriting for the batch, and it is not fixed")
        self.keep(self.with_inputs(node, [x, self.const(want, hint="shape")]), k_out)

    def r_Tile(self, node: onnx.NodeProto) -> None:
        x, rep = node.input[0], node.input[1]
        k = self.bat[x]
        st = _static(self.same(rep, "repeats").orig)
        if st is None:
            raise self.refuse(f"its repeats '{rep}' are not known")
        reps = [int(a) for a in st.reshape(-1)]
        if k is not None and reps[k] != 1:
            raise self.refuse("it repeats along the batch axis")
        new = [1] + [p for i, p in enumerate(reps) if i != k]
        if new == reps:
            self.keep(node, k)
            return
        self.keep(self.with_inputs(node, [x, self.const(new, hint="repeats")]), k)

    def r_Shape(self, node: onnx.NodeProto) -> None:
        self.value_of_shape(node)

    r_Size = r_Shape

    def r_ConstantOfShape(self, node: onnx.NodeProto) -> None:  # pragma: no cover - inputs are never batched
        raise self.refuse("its shape input is batched")

    def r_CumSum(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        st = _static(self.same(node.input[1], "axis").orig)
        if st is None:
            raise self.refuse("its axis is not constant")
        axis = int(st.reshape(-1)[0]) % r
        if axis == k:
            raise self.refuse("it accumulates along the batch axis")
        new = self.bmap(axis, k)
        if new != int(st.reshape(-1)[0]):
            dtype = helper.tensor_dtype_to_np_dtype(self.etype.get(node.input[1], TensorProto.INT64))
            node = self.with_inputs(node, [x, self.const(np.array(new, dtype=dtype), dtype=dtype, hint="axis")])
        self.keep(node, k)

    def r_TopK(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        k = self.bat[x]
        r = self.rank(x)
        for name in node.input[1:]:
            if name:
                self.same(name, "K")
        axis = self.attr(node, "axis", -1) % r
        if axis == k:
            raise self.refuse("it selects along the batch axis")
        new = self.bmap(axis, k)
        if new != self.attr(node, "axis", -1):
            node = self.with_attr(node, axis=new)
        self.keep(node, k)

    # ---- outputs and the new graph -------------------------------------------------------------

    def finish_outputs(self) -> None:
        self.out_layout: dict[str, int | None] = {}
        renames: dict[str, str] = {}
        for out in self.g.output:
            name = out.name
            if name not in self.bat:
                raise BatchAxisError(f"{self.label}: graph output '{name}' does not depend on a batched input, "
                                     "so it has no batch axis")
            k = self.bat[name]
            if k == 0 or k is None:
                self.out_layout[name] = k
                continue
            target: int | None = 0 if self.can_convert(name, 0) else None
            tmp = self.fresh("pre_output")
            renames[name] = tmp
            self.out_layout[name] = target
        if not renames:
            return
        for node in self.nodes:
            for i, n in enumerate(node.input):
                if n in renames:
                    node.input[i] = renames[n]
            for i, n in enumerate(node.output):
                if n in renames:
                    node.output[i] = renames[n]
        for name, tmp in renames.items():
            self.bat[tmp] = self.bat[name]
            self.shape[tmp] = self.shape[name]
            cur = self.convert(tmp, self.out_layout[name])
            self.nodes.append(helper.make_node("Identity", [cur], [name], name=self.fresh("Identity")))

    def build(self, batched_inputs: list[onnx.ValueInfoProto]) -> onnx.ModelProto:
        m = onnx.ModelProto()
        m.CopyFrom(self.m)
        g = m.graph
        del g.node[:]
        g.node.extend(_drop_dead(self.nodes, self.g))
        g.initializer.extend(self.inits)
        if m.ir_version < 4:  # initializers must also be graph inputs
            for init in self.inits:
                g.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        used = {n for node in g.node for n in node.input} | {o.name for o in g.output}
        original_used = {n for node in self.g.node for n in node.input} | {o.name for o in self.g.output}
        orphaned = {i.name for i in self.g.initializer if i.name in original_used and i.name not in used}
        if orphaned:
            keep = [i for i in g.initializer if i.name not in orphaned]
            del g.initializer[:]
            g.initializer.extend(keep)
            keep_in = [i for i in g.input if i.name not in orphaned]
            del g.input[:]
            g.input.extend(keep_in)
        names = {i.name for i in batched_inputs}
        for inp in g.input:
            if inp.name in names:
                d = inp.type.tensor_type.shape.dim[0]
                d.Clear()
                d.dim_param = self.dim_name
        for out in g.output:
            layout = self.out_layout[out.name]
            tt = out.type.tensor_type
            if not tt.HasField("shape"):
                per = self.shape.get(out.name)
                if per is None:
                    continue
                for d in per:
                    dim = tt.shape.dim.add()
                    if _is_int(d):
                        dim.dim_value = int(d)
            dims = [onnx.TensorShapeProto.Dimension() for _ in range(1)]
            dims[0].dim_param = self.dim_name
            old = list(tt.shape.dim)
            new_dims = dims + (old[1:] if layout == 0 else old)
            del tt.shape.dim[:]
            for d in new_dims:
                tt.shape.dim.add().CopyFrom(d)
        del g.value_info[:]
        return m


def _drop_dead(nodes: list[onnx.NodeProto], original: onnx.GraphProto) -> list[onnx.NodeProto]:
    """``nodes`` without the ones whose outputs nothing uses any more (left over by the rewrite)."""
    originally_used = {n for node in original.node for n in node.input} | {o.name for o in original.output}
    outputs = {o.name for o in original.output}
    alive = list(nodes)
    while True:
        used = {n for node in alive for n in node.input} | outputs
        keep = [node for node in alive
                if any(o in used for o in node.output)
                or not any(o in originally_used for o in node.output if o)]
        if len(keep) == len(alive):
            return keep
        alive = keep


def _numel(dims: Iterable[int]) -> int:
    return int(math.prod(int(d) for d in dims))


def _describe(node: onnx.NodeProto, idx: int) -> str:
    if node.name:
        return f"{node.op_type} node '{node.name}'"
    out = node.output[0] if node.output else ""
    return f"{node.op_type} node #{idx} (output '{out}')"


def _is_batched_input(inp: onnx.ValueInfoProto) -> bool:
    tt = inp.type.tensor_type
    if not inp.type.HasField("tensor_type") or not tt.HasField("shape") or len(tt.shape.dim) == 0:
        return False
    d = tt.shape.dim[0]
    return not d.HasField("dim_value") or d.dim_value == 1


def _is_dynamic_input(inp: onnx.ValueInfoProto) -> bool:
    d = inp.type.tensor_type.shape.dim[0]
    return not d.HasField("dim_value")


def _broadcast_shapes(shapes: Sequence[Sequence[_Dim]]) -> list[_Dim] | None:
    r = max(len(s) for s in shapes)
    out: list[_Dim] = []
    for i in range(r):
        dims = [s[i - (r - len(s))] for s in shapes if i - (r - len(s)) >= 0]
        not_one = {d for d in dims if not (_is_int(d) and d == 1)}
        if len(not_one) > 1:
            return None
        out.append(not_one.pop() if not_one else 1)
    return out


# --------------------------------------------------------------------------------------------------
# value evaluation of shape ops (numpy, on int / symbol object arrays)


def _evaluate(op: str, node: onnx.NodeProto, ins: list[np.ndarray | None], opset: int,
              ed: _Editor) -> list[np.ndarray | None]:
    def attr(name: str, default: Any = None) -> Any:
        return ed.attr(node, name, default)

    if op == "Constant":
        for a in node.attribute:
            if a.name == "value":
                return [numpy_helper.to_array(a.t)]
            if a.name == "value_int":
                return [np.array(a.i, dtype=np.int64)]
            if a.name == "value_ints":
                return [np.array(list(a.ints), dtype=np.int64)]
            if a.name == "value_float":
                return [np.array(a.f, dtype=np.float32)]
            if a.name == "value_floats":
                return [np.array(list(a.floats), dtype=np.float32)]
        return [None]
    x = ins[0] if ins else None
    if x is None:
        return [None]
    if op == "Identity":
        return [x]
    if op == "Cast":
        to = attr("to")
        if to in _INT_TYPES:
            if x.dtype == object:
                return [x]
            return [x.astype(helper.tensor_dtype_to_np_dtype(to))]
        if x.dtype == object:
            st = _static(x)
            if st is None:
                return [None]
            x = st
        return [x.astype(helper.tensor_dtype_to_np_dtype(to))]
    if op == "Gather":
        idx = _static(ins[1])
        if idx is None:
            return [None]
        axis = attr("axis", 0)
        return [np.take(x, idx, axis=axis)]
    if op == "Concat":
        parts = [p for p in ins if p is not None]
        if len(parts) != len([n for n in node.input if n]):
            return [None]
        if any(p.dtype == object for p in parts):
            parts = [_obj(p) for p in parts]
        return [np.concatenate(parts, axis=attr("axis", 0))]
    if op in ("Unsqueeze", "Squeeze"):
        if opset < 13:
            axes = attr("axes", None)
        else:
            axes = None if len(ins) < 2 or ins[1] is None else [int(a) for a in _static(ins[1]).reshape(-1)]
        if op == "Unsqueeze":
            ro = x.ndim + len(axes)
            out = x
            for a in sorted(a % ro for a in axes):
                out = np.expand_dims(out, a)
            return [out]
        if axes is None:
            return [np.squeeze(x)]
        return [np.squeeze(x, axis=tuple(a % x.ndim for a in axes))]
    if op == "Slice":
        if opset < 10:
            starts, ends = attr("starts"), attr("ends")
            axes = attr("axes", list(range(len(starts))))
            steps = [1] * len(starts)
        else:
            def iv(i: int) -> list[int] | None:
                if len(ins) <= i or ins[i] is None:
                    return None
                return [int(a) for a in _static(ins[i]).reshape(-1)]

            starts, ends = iv(1), iv(2)
            axes = iv(3) if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
            steps = iv(4) if len(node.input) > 4 and node.input[4] else [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            sl[a % x.ndim] = slice(s, e, st)
        return [x[tuple(sl)]]
    if op == "Reshape":
        target = _ints(ins[1])
        if target is None:
            return [None]
        res = _resolve(target, list(x.shape), bool(attr("allowzero", 0)))
        if res is None or not all(_is_int(d) for d in res):
            return [None]
        return [x.reshape([int(d) for d in res])]
    if op == "Flatten":
        axis = attr("axis", 1) % (x.ndim + 1)
        return [x.reshape(int(math.prod(x.shape[:axis])), -1)]
    if op == "Transpose":
        return [np.transpose(x, attr("perm", None))]
    if op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Equal"):
        y = ins[1]
        if y is None:
            return [None]
        sym = x.dtype == object or y.dtype == object
        if op == "Div" and not sym and np.issubdtype(x.dtype, np.integer):
            return [np.vectorize(_div, otypes=[object])(_obj(x), _obj(y)).astype(x.dtype)]
        if not sym:
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Max": np.maximum,
                  "Min": np.minimum, "Equal": np.equal}[op]
            return [fn(x, y).astype(x.dtype) if op != "Equal" else fn(x, y)]
        if op in ("Max", "Min", "Equal"):
            return [None]
        fn2 = {"Add": _add, "Sub": lambda a, b: _add(a, -b) if _is_int(b) else _opaque("-", a, b), "Mul": _mul,
               "Div": _div}[op]
        return [np.vectorize(fn2, otypes=[object])(_obj(x), _obj(y))]
    if op == "Neg":
        return [np.vectorize(lambda a: -a, otypes=[object])(x) if x.dtype == object else -x]
    if op in ("Floor", "Ceil"):
        if x.dtype == object:
            return [None]
        return [np.floor(x) if op == "Floor" else np.ceil(x)]
    if op == "Where":
        c, a, b = ins[0], ins[1], ins[2]
        if c is None or a is None or b is None or c.dtype == object:
            return [None]
        if a.dtype == object or b.dtype == object:
            return [np.where(c, _obj(a), _obj(b))]
        return [np.where(c, a, b)]
    if op == "ConstantOfShape":
        shape = _static(x)
        if shape is None or _numel(shape.tolist()) > _MAX_VALUE:
            return [None]
        value = attr("value", None)
        fill = numpy_helper.to_array(value).reshape(-1) if value is not None else np.zeros(1, dtype=np.float32)
        return [np.full(shape.tolist(), fill[0], dtype=fill.dtype)]
    if op == "Expand":
        shape = _static(ins[1])
        if shape is None:
            return [None]
        return [x * np.ones(shape.tolist(), dtype=x.dtype) if x.dtype != object else None]
    if op == "Range":
        vals = [_static(v) if v is not None and v.dtype == object else v for v in ins]
        if any(v is None for v in vals):
            return [None]
        start, limit, delta = (np.asarray(v).reshape(-1)[0] for v in vals)
        return [np.arange(start, limit, delta, dtype=np.asarray(vals[0]).dtype)]
    return [None]


# --------------------------------------------------------------------------------------------------
# public API


def _load(model: str | Path | bytes) -> tuple[onnx.ModelProto, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        try:
            m = onnx.load_model_from_string(bytes(model))
        except Exception as exc:
            raise BatchAxisError(f"in-memory model: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
        label = f"model '{m.graph.name}'" if m.graph.name else "in-memory model"
        return m, label
    path = Path(model)
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    try:
        m = onnx.load(str(path))
    except Exception as exc:
        raise BatchAxisError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    return m, str(path)


def dynamic_batch(model: str | Path | bytes, dim_name: str = "N") -> bytes:
    """Rewrite a batch-1 ONNX model so that its batch size is dynamic.

    Args:
        model: the model, as a file path or serialised ``ModelProto`` bytes.
        dim_name: the symbolic name (``dim_param``) given to the new batch dim.

    Returns:
        The serialised edited model. Each graph input whose dim 0 is 1 takes ``[dim_name, ...]`` (same
        dtype, other dims unchanged) and a batch of samples stacked on axis 0. Each graph output of
        per-sample shape ``[1, ...]`` becomes ``[dim_name, ...]``; one whose per-sample shape has no
        leading 1 (e.g. ``[605, 95]``) becomes ``[dim_name, 605, 95]``. Sample ``i`` of every output
        equals the original model's output for sample ``i``. Inputs with no dim 0 or a fixed dim 0
        other than 1 stay as they are and are shared by all samples of a batch. A model whose batched
        inputs already all have a symbolic dim 0 is returned unchanged.

    Raises:
        BatchAxisError: the graph holds something that cannot be proved to compute each sample on its
            own (the message names the model, the node's op type and name, and why), no input has a
            leading dim of 1, or ``model`` is not a readable ONNX model.
        FileNotFoundError: ``model`` is a path that does not exist.
    """
    if not isinstance(dim_name, str) or not dim_name:
        raise ValueError(f"dim_name must be a non-empty string, got {dim_name!r}")
    m, label = _load(model)
    used = {d.dim_param for v in [*m.graph.input, *m.graph.output] for d in v.type.tensor_type.shape.dim}
    inputs = [i for i in m.graph.input if i.name not in {init.name for init in m.graph.initializer}]
    batched = [i for i in inputs if _is_batched_input(i)]
    if batched and all(_is_dynamic_input(i) for i in batched):
        return m.SerializeToString()
    if dim_name in used:
        raise BatchAxisError(f"{label}: the model already uses the dim name '{dim_name}' for another dim; "
                             "choose another dim_name")
    try:
        onnx.checker.check_model(m)
        checkable = True
    except onnx.checker.ValidationError:  # the original does not pass either: nothing to compare against
        checkable = False
    edited = _Editor(m, label, dim_name).run()
    if checkable:
        try:
            onnx.checker.check_model(edited)
        except onnx.checker.ValidationError as exc:  # pragma: no cover - a bug in a rule
            raise BatchAxisError(f"{label}: the edited model does not pass the ONNX checker: {exc}") from None
    return edited.SerializeToString()


def _session(model: bytes) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])


def _batched_input_names(model: onnx.ModelProto) -> set[str]:
    inits = {i.name for i in model.graph.initializer}
    return {i.name for i in model.graph.input if i.name not in inits and _is_batched_input(i)
            and _is_dynamic_input(i)}


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    if a.dtype == np.bool_ or b.dtype == np.bool_:
        a, b = a.astype(np.int64), b.astype(np.int64)
    af, bf = a.astype(np.float64), b.astype(np.float64)
    nan_a, nan_b = np.isnan(af), np.isnan(bf)
    if (nan_a != nan_b).any():
        return math.inf
    diff = np.abs(np.where(nan_a, 0.0, af) - np.where(nan_b, 0.0, bf))
    return float(diff.max())


def verify_batch(original: str | Path | bytes, edited: bytes, feeds_list: Sequence[Mapping[str, np.ndarray]],
                 atol: float = 1e-4) -> float:
    """Run ``original`` once per sample and ``edited`` once on the stacked batch; compare.

    Args:
        original: the batch-1 model (path or bytes).
        edited: the model `dynamic_batch` returned.
        feeds_list: one feed per sample, each ``{input name: array}`` at the original model's shapes
            and dtypes (batched inputs have dim 0 = 1). Inputs that the edited model does not batch
            must hold the same array in every feed.
        atol: the largest absolute difference accepted.

    Returns:
        The largest absolute difference between sample ``i`` of an edited output and the original
        output for feed ``i``, over all outputs and samples (float64; 0.0 for identical results).

    Raises:
        BatchAxisError: an edited output does not have the batched shape (``[n, ...]`` for per-sample
            ``[1, ...]`` or ``[n] + shape``), or the difference exceeds ``atol`` (the message names the
            output and the difference).
        ValueError: ``feeds_list`` is empty, a batched input's dim 0 is not 1, or an unbatched input
            differs between feeds.
    """
    if not feeds_list:
        raise ValueError("feeds_list is empty")
    orig_bytes = original if isinstance(original, bytes) else Path(original).read_bytes()
    edited_model = onnx.load_model_from_string(edited)
    batched = _batched_input_names(edited_model)
    stacked: dict[str, np.ndarray] = {}
    for name in feeds_list[0]:
        arrays = [np.asarray(f[name]) for f in feeds_list]
        if name in batched:
            for a in arrays:
                if a.ndim == 0 or a.shape[0] != 1:
                    raise ValueError(f"input '{name}': each sample must have dim 0 = 1, got shape {a.shape}")
            stacked[name] = np.concatenate(arrays, axis=0)
        else:
            if not all(np.array_equal(arrays[0], a) for a in arrays[1:]):
                raise ValueError(f"input '{name}' is not batched, so every sample must give the same array")
            stacked[name] = arrays[0]
    s_orig, s_edit = _session(orig_bytes), _session(edited)
    names = [o.name for o in s_orig.get_outputs()]
    singles = [s_orig.run(names, dict(f)) for f in feeds_list]
    batch_out = s_edit.run(names, stacked)
    n = len(feeds_list)
    worst, worst_name = 0.0, ""
    for j, name in enumerate(names):
        e = batch_out[j]
        for i, single in enumerate(singles):
            o = single[j]
            if o.ndim >= 1 and o.shape[0] == 1 and e.shape == (n, *o.shape[1:]):
                part = e[i:i + 1]
            elif e.shape == (n, *o.shape):
                part = e[i]
            else:
                raise BatchAxisError(f"output '{name}': a batch of {n} gave shape {list(e.shape)}, but one sample "
                                     f"gives {list(o.shape)}")
            d = _max_abs_diff(part, o)
            if d > worst or not worst_name:
                worst, worst_name = d, name
    if not worst <= atol:
        raise BatchAxisError(f"batched outputs differ from single-sample outputs: max abs diff {worst:.3g} on "
                             f"output '{worst_name}' (atol {atol:g})")
    return worst
