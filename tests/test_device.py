"""Where a command computes: --device resolved against the machine's CUDA devices, the switches of the GPU path chosen
by the device, and each switch that runs on a CPU keeping the loss within bf16's tolerance of the fp32 reference."""

import copy

import pytest
import torch

from study.cli import main
from study.cluster.start import on_device
from study.config import DistillConfig
from study.device import BF16_ATOL, BF16_RTOL, cuda_count, describe, resolve_device
from study.distill.fused_loss import liger_installed, loss_route
from study.distill.loop import compile_on, device_teacher
from study.distill.models import make_student
from study.distill.step import MixupStudent, loss_step
from study.errors import ConfigError
from study.load import parse_config
from tests.conftest import batch_for, tiny_space

CPU, GPU0, GPU1 = torch.device("cpu"), torch.device("cuda", 0), torch.device("cuda", 1)


@pytest.mark.parametrize("choice, count, expected", [
    ("auto", 0, CPU), ("cpu", 0, CPU),  # a CPU-only machine
    ("auto", 2, GPU0), ("cpu", 2, CPU), ("cuda", 2, GPU0), ("cuda:1", 2, GPU1),  # a machine with two GPUs
])
def test_resolve_device(choice, count, expected):
    assert resolve_device(choice, count) == expected


@pytest.mark.parametrize("choice, count, message", [
    ("cuda", 0, "--device cuda: torch sees no CUDA device on this machine"),
    ("cuda:0", 0, "--device cuda:0: torch sees no CUDA device on this machine"),
    ("cuda:2", 2, "--device cuda:2: this machine has 2 CUDA device(s), cuda:0 to cuda:1"),
    ("gpu", 2, "--device: must be one of auto, cpu, cuda, cuda:N, got 'gpu'"),
    ("cuda:x", 2, "--device: must be one of auto, cpu, cuda, cuda:N, got 'cuda:x'"),
])
def test_a_device_the_machine_lacks_is_one_line(choice, count, message):
    with pytest.raises(ConfigError) as err:
        resolve_device(choice, count)
    assert str(err.value) == message


def test_this_machine_resolves_auto_to_what_it_has():
    assert resolve_device("auto") == (GPU0 if cuda_count() else CPU)
    assert describe("cpu") == "cpu"


def test_compile_auto_is_on_cuda_only():
    auto, on, off = (DistillConfig(steps=1, compile=c) for c in ("auto", True, False))
    assert compile_on(auto, GPU0) and not compile_on(auto, CPU)
    assert compile_on(on, CPU) and not compile_on(off, GPU0)


@pytest.mark.parametrize("loss_chunk, fused_loss, device, installed, route", [
    (0, True, "cuda", True, "reference"),  # loss_chunk 0 asks for the reference loss, everywhere
    (8192, True, "cuda", True, "fused"),
    (8192, True, "cuda", False, "projected"),  # Liger missing: the fallback
    (8192, True, "cpu", True, "projected"),  # Liger's cross-entropy is a Triton kernel: CUDA only
    (8192, False, "cuda", True, "projected"),  # switched off
])
def test_loss_route(loss_chunk, fused_loss, device, installed, route):
    assert loss_route(loss_chunk, fused_loss, device, installed) == route


def test_without_liger_cuda_falls_back_to_the_projected_loss():
    if liger_installed():
        pytest.skip("Liger Kernel is installed here")
    assert loss_route(8192, True, "cuda") == "projected"


def test_the_callers_teacher_is_left_as_it_was(world_models):
    teacher, _, _ = world_models
    assert device_teacher(teacher, CPU) is teacher  # on a CPU: the teacher itself, in fp32
    assert next(teacher.parameters()).dtype == torch.float32


@pytest.mark.parametrize("choice, gpus, use_gpu", [("cpu", 8, False), ("auto", 0, False), ("auto", 1, False),
                                                    ("auto", 2, True), ("cuda", 2, True)])
def test_a_reruns_workers_on_gpus_when_the_cluster_holds_them(choice, gpus, use_gpu):
    raw = tiny_space()
    raw["search"]["scaling"] = {"num_workers": 2}
    assert on_device(parse_config(raw), choice, gpus).search.scaling.use_gpu is use_gpu


def test_a_rerun_on_cuda_without_enough_gpus_is_one_line():
    raw = tiny_space()
    raw["search"]["scaling"] = {"num_workers": 2}
    with pytest.raises(ConfigError, match="--device cuda: the Ray cluster has 1 GPU.s.; one run's 2 worker.s. need 2"):
        on_device(parse_config(raw), "cuda", 1)


def test_the_device_reaches_train_and_the_results(tiny_world, study_yaml, tmp_path, capsys):
    import json

    out = tmp_path / "run"
    assert main(["distill", str(study_yaml()), "--out", str(out), "--set", "distill.steps=2", "--device", "cpu"]) == 0
    said = capsys.readouterr().err.splitlines()
    assert "distilling on cpu: projected loss, teacher in float32, compile off" in said  # train()'s own line
    assert json.loads((out / "metrics.json").read_text())["device"] == "cpu"


@pytest.mark.skipif(cuda_count() > 0, reason="this machine has a GPU")
def test_distill_on_cuda_without_a_gpu_is_one_line(study_yaml, capsys):
    assert main(["distill", str(study_yaml()), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "kdstudy: error: --device cuda: torch sees no CUDA device on this machine"


def test_a_bf16_teacher_keeps_the_loss_within_bf16_tolerance(world_models):
    """The teacher's weights in bf16 (what train() holds on CUDA), the step under bf16 autocast (a CPU has it too),
    against the fp32 reference loss: every term within BF16_RTOL |fp32| + BF16_ATOL."""
    teacher, _, _ = world_models
    c = DistillConfig(steps=1, batch_size=8, max_length=24, mitigation={"mode": "mixup", "p": 0.7})
    batch = batch_for(world_models, c)
    torch.manual_seed(0)
    model = MixupStudent(make_student(teacher, 1)).eval()
    with torch.no_grad():
        fp32 = loss_step(model, teacher, batch, c.model_copy(update={"loss_chunk": 0, "pad_vocab_to": 0}))
        bf16_teacher = copy.deepcopy(teacher).to(torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = loss_step(model, bf16_teacher, batch, c)
    for k in ("loss_kl", "loss_mlm", "loss_cos", "loss"):
        a, b = fp32[k].item(), bf16[k].item()
        assert abs(a - b) <= BF16_RTOL * abs(a) + BF16_ATOL, (k, a, b)
    assert next(teacher.parameters()).dtype == torch.float32


@pytest.mark.slow  # torch.compile on a CPU: tens of seconds of compiling
def test_compiled_encoders_give_the_eager_loss(world_models):
    teacher, _, _ = world_models
    c = DistillConfig(steps=1, batch_size=8, max_length=24, mitigation={"mode": "mixup", "p": 0.7})
    batch = batch_for(world_models, c)
    model = MixupStudent(make_student(teacher, 1)).eval()
    with torch.no_grad():
        eager = loss_step(model, teacher, batch, c)
        compiled = loss_step(torch.compile(model), teacher, batch, c, teacher_encoder=torch.compile(teacher.base_model))
    for k in eager:
        assert compiled[k].item() == pytest.approx(eager[k].item(), rel=1e-5, abs=1e-6), k


def test_liger_kl_equals_the_projected_kl():
    """Liger's chunked KL (beta 0, weight T^2, masked by target ids, padded vocabulary with -1e4 biases) against the
    projected loss's loss_kl, values and gradients, on the CPU where Liger imports (its cross-entropy, a Triton
    kernel, runs on CUDA only)."""
    pytest.importorskip("liger_kernel.chunked_loss", reason="Liger Kernel (the [gpu] extra) is not installed")
    from study.distill.fused_loss import _padded, liger_kl
    from study.distill.projected_loss import KDTargets, projected_kd_losses

    torch.manual_seed(0)
    n, H, V, T = 10, 8, 70, 2.0  # 70 words padded to 128: the padded rows must take no probability
    h_s, w_s, b_s = torch.randn(n, H), torch.randn(V, H) * 0.5, torch.randn(V)
    h_t, w_t, b_t = torch.randn(n, H), torch.randn(V, H) * 0.5, torch.randn(V)
    kl = torch.tensor([1.0, 1, 0, 1, 1, 1, 0, 1, 1, 1])  # 8 KL positions
    t = KDTargets(kl=kl, labels=torch.full((n,), -100), cf_labels=torch.full((n,), -100), lam=torch.ones(n),
                  n_plain=n, n_kl=8, n_kl_plain=8, n_mlm=0)
    results = []
    for route in ("projected", "liger"):
        leaves = [x.clone().requires_grad_() for x in (h_s, w_s, b_s)]
        if route == "projected":
            loss = projected_kd_losses(*leaves, h_t, None, w_t, b_t, t, T, 1.0, 0.0, chunk=4, pad_to=64)[0]
        else:
            ws, bs = _padded(leaves[1], leaves[2], 128, torch.float32)
            wt, bt = _padded(w_t, b_t, 128, torch.float32)
            loss = liger_kl(leaves[0], ws, bs, h_t, wt, bt, t, T, chunk=4, compiled=False)
        loss.backward()
        results.append((loss.item(), [x.grad for x in leaves]))
    (ref, ref_grads), (got, got_grads) = results
    assert got == pytest.approx(ref, rel=1e-5)
    for a, b in zip(ref_grads, got_grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
