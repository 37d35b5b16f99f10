"""Compile the grid messages' kernels for a GPU without one (Triton's frontend, its MLIR passes and ptxas): the
compiled path that the interpreter does not take (``triton.jit`` helpers, loops with loaded bounds, layouts).

``python tests/products/triton_grid_messages_aot.py [ARCH]`` (run without ``TRITON_INTERPRET``) compiles the node
kernel (slots 0 and 1) and the edge kernel (slots 2 and 3) with the GPU's tiles (``triton_grid_messages.blocks``)
for the benchmark's shape (mul 64, P 72, L + 1 = 4) in each dtype, and prints one JSON line per kernel with ptxas'
resource usage when ``cuobjdump`` is at hand (``test_triton_grid_messages.py`` runs it).
"""

from __future__ import annotations

import json
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton_aot import usage

from gaunt.products import triton_grid_messages as gm

MUL, P, L1 = 64, 72, 4


def compile_kernel(slot: int, dtype: str, arch: int) -> dict:
    compute = "*fp64" if dtype == "fp64" else "*fp32"
    data = f"*{dtype}"
    BU, BP, warps = gm.blocks(slot, MUL, P)
    consts = {"L1": L1, "BU": BU, "BP": BP}
    scalars = {"num_nodes": "i32", "MUL": "i32", "P": "i32"}
    if slot in (0, 1):
        kernel = gm._node_kernel
        pointers = {"src_ptr": data, "oth_ptr": "*i64", "order_ptr": "*i64", "rowptr_ptr": "*i64"}
        pointers |= {"w_ptr": data, "y_ptr": data, "y2t_ptr": compute, "out_ptr": compute}
    else:
        kernel, consts = (
            gm._edge_kernel,
            {"SLOT": slot, "L1": L1, "BJ": triton.next_power_of_2(L1 * L1), "BL": L1, "BU": BU, "BP": BP},
        )
        pointers = {"f_ptr": data, "s_ptr": data, "w_ptr": compute if slot == 2 else data}
        pointers |= {"y_ptr": data if slot == 2 else compute, "senders_ptr": "*i32", "receivers_ptr": "*i32"}
        pointers |= {"y2t_ptr": compute, "out_ptr": compute}
    signature = {**pointers, **scalars, **dict.fromkeys(consts, "constexpr")}
    source = ASTSource(kernel, signature, constexprs=consts)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    return {
        "slot": slot,
        "dtype": dtype,
        "BU": BU,
        "BP": BP,
        "num_warps": warps,
        "shared": compiled.metadata.shared,
        "usage": usage(compiled.asm["cubin"]),
    }


def main(arch: int = 90) -> None:
    for slot, dtype in ((1, "fp32"), (1, "fp64"), (0, "bf16"), (2, "fp32"), (3, "fp32")):
        print(json.dumps(compile_kernel(slot, dtype, arch)), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
