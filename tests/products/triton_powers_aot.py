"""Compile the power programs' kernel for a GPU without one (Triton's frontend, its MLIR passes and ptxas): the
compiled path that the interpreter does not take (``triton.jit`` helpers, static loops, 4-d layouts, ``tl.dot``).

``python tests/products/triton_powers_aot.py [ARCH]`` (run without ``TRITON_INTERPRET``) compiles members of the family
of the benchmark's program (``GauntManyBody`` at mul 32, L = 3, correlation 3, grid) with the GPU's tiles
(``triton_powers.blocks``): the forward, the VJP, a second and a third derivative, in several dtypes, and prints one
JSON line per kernel with ptxas' resource usage when ``cuobjdump`` is at hand (``test_triton_powers.py`` runs it).
"""

from __future__ import annotations

import json
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton_aot import usage

from gaunt.products import triton_powers as tp
from gaunt.products.powers import power_program
from gaunt.products.sphere_irreps import parse_spherical_irreps
from gaunt.so3 import Irreps

#: (tangents, with a cotangent, dtype): forward, VJP, a second derivative (JVP of the VJP), a third derivative
MEMBERS = ((0, False, "fp32"), (0, True, "fp64"), (1, True, "bf16"), (2, True, "fp32"))


def program(mul: int = 32, L: int = 3):
    sphere = parse_spherical_irreps(Irreps([(mul, (l, (-1) ** l)) for l in range(L + 1)]), "irreps", "aot")
    return power_program(sphere, sphere, (1, 2, 3), "grid")


def compile_member(tables, tangents: int, cotangent: bool, dtype: str, arch: int, columns: int = 320_000) -> dict:
    table = "*fp64" if dtype == "fp64" else "*fp32"
    block, rings, warps = tp.blocks(tables.sizes, columns, tangents, tables.stored_rings, interpret=False)
    d = tangents + cotangent
    consts = dict(tables.sizes, TP=triton.next_power_of_2(max(tangents, 1)), NTAN=tangents, EMAX=3 - d)
    consts.update(HAS_G=cotangent, BZ=block, BT=rings, PRECISION="ieee")
    pointers = {"x_ptr": f"*{dtype}", "ts_ptr": f"*{dtype}", "g_ptr": f"*{dtype}", "out_ptr": table}
    pointers |= {"syn_index": "*i32", "syn_theta": table, "syn_phi": table, "proj_phi": table}
    pointers |= {"proj_theta": table, "proj_write": "*i32", "coef_ptr": table, "expo_ptr": "*i32"}
    signature = {**pointers, **dict.fromkeys(tp.SCALARS, "i32"), **dict.fromkeys(consts, "constexpr")}
    source = ASTSource(tp.powers_kernel, signature, constexprs=consts)
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
    return {
        "tangents": tangents,
        "cotangent": cotangent,
        "dtype": dtype,
        "BZ": block,
        "num_warps": warps,
        "shared": compiled.metadata.shared,
        "usage": usage(compiled.asm["cubin"]),
    }


def main(arch: int = 90) -> None:
    tables = tp.power_tables(program())
    for tangents, cotangent, dtype in MEMBERS:
        print(json.dumps(compile_member(tables, tangents, cotangent, dtype, arch)), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
