"""`clrfind.range_test` in a script torchrun launched: two gloo processes, a DDP model and a DistributedSampler;
the loss is averaged over the ranks, both stop at the same step with the same result, rank 0 alone saves, and
the ranks leave the call together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_gloo_ranks

SCRIPT = """
import os, sys
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset
import clrfind
import clrfind.distributed

out = sys.argv[1]
waits = []
leave_together = clrfind.distributed.wait_for_peers
clrfind.distributed.wait_for_peers = lambda: waits.append(1) or leave_together()
dist.init_process_group("gloo")
rank = dist.get_rank()
g = torch.Generator().manual_seed(0)
x = torch.randn(1024, 2, generator=g)
data = TensorDataset(x, (x[:, 0] + 0.5 * x[:, 1] > 0).long())
loader = DataLoader(data, batch_size=32, sampler=DistributedSampler(data, seed=0))
torch.manual_seed(0)
model = DistributedDataParallel(torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
result = clrfind.range_test(model, loader, torch.nn.CrossEntropyLoss(), optimizer, min_lr=1e-3, max_lr=20.0,
                            steps=30, save=os.path.join(out, f"saved-by-rank{rank}"))
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    f.write(result.model_dump_json())
if rank == 0:  # a model of this process alone, tested on one rank: no collective, which would wait for the other
    alone = torch.nn.Linear(2, 2)
    solo = clrfind.range_test(alone, DataLoader(data, batch_size=32), torch.nn.CrossEntropyLoss(),
                              torch.optim.SGD(alone.parameters(), lr=0.1), min_lr=1e-3, max_lr=1.0, steps=10,
                              verify_bounds=False)
    with open(os.path.join(out, "solo.json"), "w") as f:
        f.write(solo.model_dump_json())
with open(os.path.join(out, f"waits{rank}"), "w") as f:
    f.write(str(len(waits)))
# Rank 0 worked on alone: the ranks sync before the teardown, else gloo may abort the one that tears down first.
dist.barrier()
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_the_library_under_torchrun_gives_every_rank_the_same_result(tmp_path: Path) -> None:
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    run_gloo_ranks(script, str(tmp_path))
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0] == results[1]  # rank 0's, on both
    first = results[0]
    assert first["world_size"] == 2 and first["global_batch_size"] == 64
    assert first["bounds"]["max_lr"] is not None and first["stop_reason"] in ("diverged", "completed")
    assert first["verification"] is not None  # the self-check's trials ran on both ranks too
    saved = tmp_path / "saved-by-rank0"
    assert sorted(p.name for p in saved.iterdir()) == ["range_test.json", "range_test.png", "schedule.yaml"]
    assert json.loads((saved / "range_test.json").read_text())["bounds"] == first["bounds"]
    assert not (tmp_path / "saved-by-rank1").exists()
    assert json.loads((tmp_path / "solo.json").read_text())["world_size"] == 1
    # Each rank waited for the other once, after rank 0 saved, before leaving the shared test; not in the solo one.
    assert [(tmp_path / f"waits{r}").read_text() for r in range(2)] == ["1", "1"]
