"""The recycled memory of the fused CPU kernels' large outputs (``csrc/output_memory.h``): a freed output's block
is kept and reused by the next output that fits, so every kernel must write every entry of its outputs. Each
test poisons the kept blocks with NaN before the run that reuses them and compares with the torch executor: an
entry a kernel leaves unwritten shows up (a fresh page would read 0 and could hide it)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

from gaunt.products import GridGauntProduct, cpu_build
from gaunt.products.cpu_executor import FusedProgram, program_tables, register_program
from gaunt.products.executors import cpu_runner
from gaunt.products.program import Projection, derivative
from gaunt.products.torch_executor import TorchProgram

pytestmark = pytest.mark.skipif(cpu_build.unavailable() is not None, reason=f"{cpu_build.unavailable()}")

IRREPS = "64x0e+64x1o+64x2e"  # 576 values a sample: 4000 float32 samples are ~9 MB, above the 8 MiB threshold
N = 4000
MB = 1 << 20


def poison_and_free(*tensors: torch.Tensor) -> None:
    """Fill the outputs with NaN (the caller drops them: their blocks are then kept with NaN in them)."""
    for t in tensors:
        with torch.no_grad():
            t.fill_(float("nan"))


def test_a_freed_output_is_kept_and_reused():
    cpu_build.release_kept_outputs()
    assert cpu_build.kept_output_bytes() == 0
    program = GridGauntProduct(IRREPS, IRREPS, IRREPS, executor="torch").program
    runner = FusedProgram(program, "direct")
    g = torch.Generator().manual_seed(0)
    x1, x2 = (torch.randn(N, d, generator=g) for d in program.dims[:2])
    out = runner(x1, x2)
    nbytes = out.numel() * out.element_size()
    assert nbytes >= 8 * MB
    poison_and_free(out)
    del out
    kept = cpu_build.kept_output_bytes()
    assert kept >= nbytes
    out = runner(x1, x2)  # takes the kept block back
    assert cpu_build.kept_output_bytes() < kept
    torch.testing.assert_close(
        out.double(), TorchProgram(program).evaluate(x1.double(), x2.double()), rtol=1e-5, atol=1e-4
    )
    del out
    cpu_build.release_kept_outputs()
    assert cpu_build.kept_output_bytes() == 0


@pytest.mark.parametrize("kernel", ["transform", "direct"])
def test_every_program_writes_every_entry_of_a_recycled_block(kernel):
    product = GridGauntProduct(IRREPS, IRREPS, IRREPS, executor="torch")
    g = torch.Generator().manual_seed(1)
    for program in (product.program, derivative(product.program, 0), derivative(product.program, 1)):
        runner = FusedProgram(program, kernel)
        x1, x2 = (torch.randn(N, d, generator=g) for d in program.dims[:2])
        poison_and_free(runner(x1, x2))
        assert cpu_build.kept_output_bytes() > 0
        exact = TorchProgram(program).evaluate(x1.double(), x2.double())
        torch.testing.assert_close(runner(x1, x2).double(), exact, rtol=0, atol=1e-5 * float(exact.abs().max()))


@pytest.mark.parametrize("kernel", ["transform", "direct"])
@pytest.mark.parametrize("shared_weights", [True, False])
def test_a_product_step_on_recycled_blocks_equals_the_torch_executor(kernel, shared_weights):
    """Forward and all gradients (the folded weights' ops: out, the kept v, both input gradients) twice, the first
    run's results poisoned and freed; the second run on other inputs equals the torch executor."""
    kw = dict(internal_weights=False, shared_weights=shared_weights)
    product = GridGauntProduct(IRREPS, IRREPS, IRREPS, executor="cpu_fused", **kw)
    cpu_runner(product.frame.runner).use_kernel(kernel)
    reference = GridGauntProduct(IRREPS, IRREPS, IRREPS, executor="torch", **kw).double()
    g = torch.Generator().manual_seed(2)

    def inputs():
        w = torch.randn(*(() if shared_weights else (N,)), product.weight_numel, generator=g)
        x = [torch.randn(N, product.irreps_in1.dim, generator=g), torch.randn(N, product.irreps_in2.dim, generator=g)]
        return [t.requires_grad_() for t in (*x, w)], torch.randn(N, product.irreps_out.dim, generator=g)

    args, cotangent = inputs()
    out = product(*args)
    poison_and_free(out, *torch.autograd.grad(out, args, cotangent))
    del out
    assert cpu_build.kept_output_bytes() > 0
    args, cotangent = inputs()
    out = product(*args)
    grads = torch.autograd.grad(out, args, cotangent)
    exact_args = [a.detach().double().requires_grad_() for a in args]
    exact = reference(*exact_args)
    exact_grads = torch.autograd.grad(exact, exact_args, cotangent.double())
    for got, want in zip((out, *grads), (exact, *exact_grads)):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4 * float(want.detach().abs().max()))


def test_an_output_block_in_no_channel_is_zeroed_on_the_channel_columns():
    """A program whose read-out leaves one output block unread, with scaled weights on the direct kernel's channel
    columns: the kernel writes only the blocks, so it zeroes the rest of each row itself (a recycled block holds
    whatever the last tensor left)."""
    mul = 16
    irreps = f"{mul}x0e+{mul}x1o"
    program = GridGauntProduct(irreps, irreps, irreps, executor="torch").program
    p = program.projections[0]
    read = p.read.copy()
    read[:mul] = -1  # the 0e block of every channel
    unread = dataclasses.replace(program, projections=(Projection(p.theta, p.phi, read),))
    program_id = register_program(unread, "direct")
    _, values, meta = program_tables(program_id, torch.float32)
    index = torch.tensor([*range(mul), *(mul + u for u in range(mul) for _ in range(3))])
    assert torch.ops.gaunt_fused.scaled_weights_columns(meta, index, index, index, None, None, None, False)
    g = torch.Generator().manual_seed(4)
    n, dim = 40000, index.numel()  # 64 values a sample: 10 MB

    def run():
        a, b = torch.randn(n, dim, generator=g), torch.randn(n, dim, generator=g)
        w = torch.randn(2 * mul, generator=g)
        out = torch.ops.gaunt_fused.scaled_weights(
            a, b, w, index, w, index, w, index, None, None, None, dim, None, True, False, values, meta, True
        )[0]
        return out, w[index] * TorchProgram(unread).evaluate(a * w[index], b * w[index])

    out, _ = run()
    assert out.numel() * out.element_size() >= 8 * MB
    poison_and_free(out)
    del out
    out, exact = run()
    assert float(exact[:, :mul].abs().max()) == 0
    torch.testing.assert_close(out, exact, rtol=1e-5, atol=1e-4)


def test_a_small_output_does_not_take_a_much_larger_block():
    """A kept block serves an output of at most 1/8 less (else small outputs would pin large blocks)."""
    cpu_build.release_kept_outputs()
    program = GridGauntProduct(IRREPS, IRREPS, IRREPS, executor="torch").program
    runner = FusedProgram(program, "direct")
    x = [torch.randn(2 * N, d) for d in program.dims[:2]]
    out = runner(*x)
    del out  # its block (2 N samples) is kept
    large = cpu_build.kept_output_bytes()
    assert large >= 16 * MB
    small = runner(x[0][:N], x[1][:N])  # half the size: a fresh block
    assert cpu_build.kept_output_bytes() == large
    del small
    assert cpu_build.kept_output_bytes() > large
    cpu_build.release_kept_outputs()


@pytest.mark.parametrize("cap_mb", [0, 24])
def test_the_kept_bytes_stay_under_the_cap(cap_mb):
    """GAUNT_CPU_OUTPUT_CACHE_MB (read once per process): three freed outputs of ~9 MB each, at most the cap kept
    (the oldest freed first); 0 keeps none."""
    code = (
        "import torch; from gaunt.products import cpu_build, GridGauntProduct;"
        "from gaunt.products.cpu_executor import FusedProgram;"
        f"p = GridGauntProduct('{IRREPS}', '{IRREPS}', '{IRREPS}', executor='torch').program;"
        "run = FusedProgram(p, 'direct');"
        f"outs = [run(torch.randn({N}, p.dims[0]), torch.randn({N}, p.dims[1])) for _ in range(3)];"
        "assert all(o.numel() * 4 >= 8 << 20 for o in outs); del outs; print(cpu_build.kept_output_bytes())"
    )
    env = dict(os.environ, GAUNT_CPU_OUTPUT_CACHE_MB=str(cap_mb))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    kept = int(done.stdout.split()[-1])
    assert kept <= cap_mb * MB
    assert (kept > 0) == (cap_mb > 0)


def test_a_forked_child_allocates_and_frees_outputs():
    """A fork (a DataLoader's workers) with blocks kept: the child takes and gives back blocks (the allocator's lock
    is released on both sides of the fork), and so does the parent afterwards."""
    code = (
        "import os, torch; from gaunt.products import cpu_build, GridGauntProduct;"
        "from gaunt.products.cpu_executor import FusedProgram;"
        f"p = GridGauntProduct('{IRREPS}', '{IRREPS}', '{IRREPS}', executor='torch').program;"
        "run = FusedProgram(p, 'direct');"
        f"x = [torch.randn({N}, d) for d in p.dims[:2]];"
        "out = run(*x); del out; assert cpu_build.kept_output_bytes() > 0;"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    torch.set_num_threads(1); out = run(*x); del out\n"
        "    os._exit(0 if cpu_build.kept_output_bytes() > 0 else 3)\n"
        "_, status = os.waitpid(pid, 0); assert os.waitstatus_to_exitcode(status) == 0, status;"
        "out = run(*x); del out; print(cpu_build.kept_output_bytes())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) > 0
