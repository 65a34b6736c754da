"""Give a fixed-batch-1 ONNX model a dynamic batch axis (see `streamcnn.batchaxis`).

Usage: ``python tools/dynamic_batch.py IN.onnx OUT.onnx [--check] [--dim-name N] [--batch 3] [--size 64]
[--dim NAME=VALUE ...] [--atol 1e-4] [--seed 0]``

Writes the edited model to OUT.onnx. With ``--check`` it first runs the original model once per sample
and the edited one on the stacked batch (``--batch`` random samples drawn within each input's declared
dtype and shape; dynamic non-batch dims take ``--size``, or the value given with ``--dim``) and prints
the largest absolute difference; OUT.onnx is only written when that is within ``--atol``.

A model that cannot be edited (or fails the check) gives a one-line ``error: ...`` on stderr and exit
status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamcnn.batchaxis import dynamic_batch, verify_batch  # noqa: E402
from streamcnn.errors import StreamcnnError  # noqa: E402


def _dim_values(items: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit() or int(value) < 1:
            raise ValueError(f"--dim wants NAME=VALUE with a positive integer VALUE, got '{item}'")
        out[name] = int(value)
    return out


def random_feeds(model: onnx.ModelProto, batch: int, size: int, dims: dict[str, int],
                 seed: int = 0) -> list[dict[str, np.ndarray]]:
    """``batch`` random feeds for the batch-1 ``model``: each input at its declared dtype and shape (dim 0
    of a batched input = 1; other symbolic dims from ``dims`` or ``size``). Floats are uniform in [0, 1),
    integers in [0, 10), booleans random. Inputs with no dim 0 of 1 (unbatched) get one array shared by all
    feeds."""
    rng = np.random.default_rng(seed)
    inits = {i.name for i in model.graph.initializer}
    feeds: list[dict[str, np.ndarray]] = [{} for _ in range(batch)]
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        tt = inp.type.tensor_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = []
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            elif i == 0:
                shape.append(1)
            else:
                shape.append(dims.get(d.dim_param, size))
        batched = bool(shape) and shape[0] == 1

        def draw(shape: list[int] = shape, dtype: np.dtype = dtype) -> np.ndarray:
            if np.issubdtype(dtype, np.floating):
                return rng.random(shape).astype(dtype)
            if dtype == np.bool_:
                return rng.random(shape) < 0.5
            return rng.integers(0, 10, size=shape).astype(dtype)

        shared = None if batched else draw()
        for feed in feeds:
            feed[inp.name] = draw() if batched else shared
    return feeds


def _shape_text(v: onnx.ValueInfoProto) -> str:
    dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in v.type.tensor_type.shape.dim]
    return f"'{v.name}' [{', '.join(dims)}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Give a fixed-batch-1 ONNX model a dynamic batch axis.")
    parser.add_argument("input", type=Path, help="the batch-1 model (.onnx)")
    parser.add_argument("output", type=Path, help="where to write the edited model")
    parser.add_argument("--check", action="store_true",
                        help="verify a batch of random inputs against single runs before writing")
    parser.add_argument("--dim-name", default="N", help="name of the batch dim (default N)")
    parser.add_argument("--batch", type=int, default=3, help="batch size for --check (default 3)")
    parser.add_argument("--size", type=int, default=64,
                        help="value for dynamic non-batch dims in --check (default 64)")
    parser.add_argument("--dim", action="append", default=[], metavar="NAME=VALUE",
                        help="value of one named dynamic dim in --check (repeatable)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest difference --check accepts")
    parser.add_argument("--seed", type=int, default=0, help="random seed for --check")
    args = parser.parse_args(argv)
    try:
        dims = _dim_values(args.dim)
        if args.batch < 1 or args.size < 1:
            raise ValueError("--batch and --size must be at least 1")
        edited = dynamic_batch(args.input, args.dim_name)
        unchanged = edited == onnx.load(str(args.input)).SerializeToString()
        edited_model = onnx.load_model_from_string(edited)
        if args.check:
            original = onnx.load(str(args.input))
            feeds = random_feeds(original, args.batch, args.size, dims, args.seed)
            diff = verify_batch(args.input, edited, feeds, atol=args.atol)
            print(f"check: a batch of {args.batch} random inputs vs {args.batch} single runs: "
                  f"max abs diff {diff:.3g} (atol {args.atol:g}): OK")
        args.output.write_bytes(edited)
    except (StreamcnnError, OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    inits = {i.name for i in edited_model.graph.initializer}
    ins = ", ".join(_shape_text(v) for v in edited_model.graph.input if v.name not in inits)
    outs = ", ".join(_shape_text(v) for v in edited_model.graph.output)
    note = " (its batch axis was already dynamic: unchanged)" if unchanged else ""
    print(f"wrote {args.output}{note}: inputs {ins}; outputs {outs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
