#!/usr/bin/env python3
"""Write ONNX's own backend node test cases for poolpipe's node-case test.

Usage
-----
    python3 scripts/onnx_node_cases.py OUT_DIR [--only NAME[,NAME...]]

The installed ``onnx`` package generates every node case (``collect_testcases()`` runs the case
generators; the wheel does not ship the data folder).  Copies named ``*_expanded*`` (the same
case written with the op's function body) are skipped.  For every case whose inputs and outputs
are all tensors, OUT_DIR/NAME/ gets:

model.onnx      the case's model, with every input after the first turned into an initializer
                holding the case's value (so attribute-like inputs, such as a Reshape's shape,
                are constants); the first input stays a graph input
input_0.pb      the first input (a serialised TensorProto of its own element type)
output_K.pb     the expected output K

and OUT_DIR/manifest.json lists {"name", "ops", "domains", "opset", "ir_version", "rtol",
"atol", "inputs": [element type names], "outputs": [...], "float": first input is a float
type, "skipped": reason or null}.  Cases the harness cannot write (non-tensor inputs or
outputs, no inputs) are listed with a "skipped" reason and no folder.
"""

import argparse
import json
import os
import sys
import warnings

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    import onnx
    from onnx import numpy_helper, TensorProto, helper
    from onnx.backend.test.case import node as nodecases

    only = set(filter(None, a.only.split(",")))
    os.makedirs(a.out, exist_ok=True)
    floats = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
    cases = nodecases.collect_testcases()
    manifest = []
    for c in cases:
        if "_expanded" in c.name or (only and c.name not in only):
            continue
        m = c.model
        g = m.graph
        entry = {
            "name": c.name,
            "ops": sorted({n.op_type for n in g.node}),
            "domains": sorted({n.domain for n in g.node}),
            "opset": max([o.version for o in m.opset_import if o.domain in ("", "ai.onnx")] or [-1]),
            "ir_version": m.ir_version,
            "rtol": float(c.rtol),
            "atol": float(c.atol),
            "skipped": None,
        }
        vals = list(g.input) + list(g.output)
        if not all(v.type.HasField("tensor_type") for v in vals):
            entry["skipped"] = "an input or output is not a tensor (sequence, optional or map)"
        elif len(g.input) == 0:
            entry["skipped"] = "the case has no inputs"
        elif not c.data_sets:
            entry["skipped"] = "the case has no data"
        if entry["skipped"] is None:
            elem = [v.type.tensor_type.elem_type for v in g.input]
            entry["inputs"] = [TensorProto.DataType.Name(t).lower() for t in elem]
            entry["outputs"] = [TensorProto.DataType.Name(v.type.tensor_type.elem_type).lower() for v in g.output]
            entry["float"] = elem[0] in floats
            inputs, outputs = c.data_sets[0]
            folded = onnx.ModelProto()
            folded.CopyFrom(m)
            fg = folded.graph
            try:
                for v, value in zip(list(fg.input)[1:], inputs[1:]):
                    t = numpy_helper.from_array(np.asarray(value), v.name) if not isinstance(value, TensorProto) else value
                    t.name = v.name
                    # Keep the declared element type (bfloat16 and float8 arrive as other dtypes).
                    if t.data_type != v.type.tensor_type.elem_type:
                        t = helper.make_tensor(v.name, v.type.tensor_type.elem_type, np.asarray(value).shape,
                                               np.asarray(value).flatten().tolist())
                    fg.initializer.append(t)
                del fg.input[1:]
                d = os.path.join(a.out, c.name)
                os.makedirs(d, exist_ok=True)
                with open(os.path.join(d, "model.onnx"), "wb") as f:
                    f.write(folded.SerializeToString())

                def proto(value, v):
                    if isinstance(value, TensorProto):
                        return value
                    arr = np.asarray(value)
                    t = numpy_helper.from_array(arr, v.name)
                    if t.data_type != v.type.tensor_type.elem_type:
                        t = helper.make_tensor(v.name, v.type.tensor_type.elem_type, arr.shape, arr.flatten().tolist())
                    return t

                with open(os.path.join(d, "input_0.pb"), "wb") as f:
                    f.write(proto(inputs[0], g.input[0]).SerializeToString())
                for k, (value, v) in enumerate(zip(outputs, g.output)):
                    with open(os.path.join(d, f"output_{k}.pb"), "wb") as f:
                        f.write(proto(value, v).SerializeToString())
            except Exception as e:  # a value the harness cannot serialise
                entry["skipped"] = f"the harness cannot write the case's data: {type(e).__name__}: {e}"
        manifest.append(entry)
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump({"onnx_version": onnx.__version__, "opset": onnx.defs.onnx_opset_version(),
                   "ir_version": onnx.IR_VERSION, "cases": manifest}, f, indent=1)
    written = sum(1 for e in manifest if e["skipped"] is None)
    print(f"{written} node cases written, {len(manifest) - written} skipped", file=sys.stderr)


if __name__ == "__main__":
    main()
