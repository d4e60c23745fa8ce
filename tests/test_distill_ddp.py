"""The distillation loop under DDP: 2 CPU processes with gloo, as Ray Train will run it."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from study.config import DistillConfig


def _worker(rank, world_size, init_file, teacher_dir, out_dir):
    from study.distill.batches import DistillData
    from study.distill.data import tokenize
    from study.distill.loop import train
    from study.distill.models import load_masked_lm, make_student

    torch.set_num_threads(1)  # two processes on a 2-core machine
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        teacher, tokenizer = load_masked_lm(teacher_dir)
        ids = tokenize(open(f"{teacher_dir}/../corpus.txt").read().splitlines()[:400], tokenizer, 24)
        cfg = DistillConfig(steps=4, batch_size=8, max_length=24, log_every=2,
                            mitigation={"mode": "mixup", "p": 1.0})
        student = make_student(teacher, 1)
        metrics = train(cfg, teacher, student, tokenizer, ids, rank=rank, world_size=world_size)
        shard = list(DistillData(ids, tokenizer, cfg, rank, world_size).batches(0))
        torch.save({"state": student.state_dict(), "metrics": metrics, "shard": shard}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two processes
def test_two_ranks_stay_in_sync(tiny_world, tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "pg"), str(tiny_world.teacher_dir), str(tmp_path)), nprocs=2)
    a = torch.load(tmp_path / "rank0.pt", weights_only=False)
    b = torch.load(tmp_path / "rank1.pt", weights_only=False)
    for (name, x), y in zip(a["state"].items(), b["state"].values()):
        assert torch.allclose(x, y, atol=1e-6), name
    assert a["metrics"]["distill/steps"] == 4
    # ranks see different shards, but log (and judge divergence on) the same mean over ranks
    assert a["metrics"]["distill/loss"] == b["metrics"]["distill/loss"]
    assert a["shard"] != b["shard"]
