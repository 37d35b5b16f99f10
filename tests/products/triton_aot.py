"""Compile the sphere-program kernel for a GPU without one (Triton's frontend, its MLIR passes and ptxas): the
compiled path that the interpreter does not take (``triton.jit`` helpers, layouts, ``tl.dot`` lowering).

``python tests/products/triton_aot.py [ARCH]`` (run without ``TRITON_INTERPRET``) compiles the launches of two
small programs (one term, and two terms into one projection with accumulation) for each dtype and prints one
JSON line per kernel with ptxas' resource usage when ``cuobjdump`` is at hand (``test_triton.py`` runs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from gaunt.products import GridGauntProduct, VectorGauntProduct
from gaunt.products import triton_kernels as kernels
from gaunt.products.triton_layout import blocks, kernel_tables

SCALARS = kernels.SCALARS


def signature(dtype: str) -> dict[str, str]:
    """The kernel's argument types for inputs of ``dtype`` ("fp32", "fp64", "bf16"; tables fp32 or fp64)."""
    table = "*fp64" if dtype == "fp64" else "*fp32"
    pointers = {
        "x1_ptr": f"*{dtype}",
        "x2_ptr": f"*{dtype}",
        "out_ptr": table,
        "syn_index": "*i32",
        "syn_theta": table,
        "syn_phi": table,
        "proj_phi": table,
        "proj_theta": table,
        "proj_write": "*i32",
        "coef_ptr": table,
    }
    return {**pointers, **dict.fromkeys(SCALARS, "i32")}


def compile_launches(program, dtype: str, arch: int, columns: int = 10_000) -> list[dict]:
    """Every launch of ``program`` compiled for ``sm_<arch>`` with the GPU's tiles (``triton_layout.blocks``)."""
    layout = kernel_tables(program)
    block, rings, warps = blocks(layout.sizes, columns, layout.stored_rings, interpret=False)
    out = []
    for k, (_, terms) in enumerate(layout.launches):
        consts = dict(layout.sizes, BZ=block, BT=rings, TWO=len(terms) == 2, ACCUMULATE=k > 0, PRECISION="ieee")
        source = ASTSource(
            kernels.sphere_program_kernel, {**signature(dtype), **dict.fromkeys(consts, "constexpr")}, constexprs=consts
        )
        compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
        out.append(
            {
                "program": program.name,
                "dtype": dtype,
                "launch": k,
                "BZ": block,
                "num_warps": warps,
                "shared": compiled.metadata.shared,
                "usage": usage(compiled.asm["cubin"]),
            }
        )
    return out


def usage(cubin: bytes) -> str | None:
    """ptxas' registers and spills (``cuobjdump --dump-resource-usage``), if the tool is there."""
    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    if not os.path.exists(tool):
        return None
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "--dump-resource-usage", f.name], capture_output=True, text=True, check=False)
    lines = [line.strip() for line in text.stdout.splitlines() if "REG:" in line]
    return " ".join(lines[0].split()[:3]) if lines else None


def main(arch: int = 90) -> None:
    programs = (
        GridGauntProduct("4x0e+4x1o+4x2e", "4x0e+4x1o+4x2e", "4x0e+4x1o+4x2e", executor="torch").program,
        VectorGauntProduct("4x0e+4x1o", "4x0e+4x1o", "4x0e+4x1o+4x1e", executor="torch").program,
    )
    for program, dtype in ((programs[0], "fp64"), (programs[1], "fp32"), (programs[0], "bf16")):
        for record in compile_launches(program, dtype, arch):
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
