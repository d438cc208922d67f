"""Issue 16: what `clrfind.range_test` costs in memory with each way of restoring the caller's state.

One run prints the modes side by side, each in a fresh subprocess (the peak resident set of a process cannot go down,
so modes sharing a process would read each other's peaks), on the same model, data, optimizer and ladder:

  none     restore=False: nothing is copied (the floor)
  device   the copy on the model's device that clrfind kept before issue 16 (a clone of the model state and a deep
           copy of the optimizer state, held through a restore=False run): on CPU it is the same as "cpu"
  cpu      restore="cpu" (restore=True): a copy on the host
  disk     restore="disk": a temporary file, read back through a memory map

Each child builds an MLP of --layers square layers of --width, gives SGD momentum buffers with one step, and runs a
--steps range test without the self-check. On CPU it reports the process's peak RSS (VmHWM, reset just before the
test, so it is the test's own peak over what the process held before it), the peak of its anonymous memory (RssAnon,
sampled every millisecond: a memory map's file-backed pages are not in it) and `result.peak_memory` (ru_maxrss,
what the results record, including the import of torch); on CUDA torch's allocator peak on the device.

    .venv/bin/python bench/memory.py                         # CPU, 4 x 2048 (~134 MB of weights + momentum)
    .venv/bin/python bench/memory.py --device cuda --width 8192 --layers 8
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODES = ("none", "device", "cpu", "disk")
LABELS = {
    "none": "none (`restore=False`, the floor)",
    "device": "device (before issue 16)",
    "cpu": "cpu (`restore=True`)",
    "disk": "disk",
}
MIB = 2**20


def _proc_kib(field: str) -> int:
    """A line of /proc/self/status in KiB (Linux): VmRSS now, VmHWM the peak."""
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


class _AnonPeak:
    """The peak of RssAnon (memory only the process holds, unlike the file-backed pages of a memory map, which the
    kernel can drop), sampled every millisecond by a thread: Linux keeps no high-water mark of it."""

    def __init__(self) -> None:
        self.peak = _proc_kib("RssAnon")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _proc_kib("RssAnon"))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _proc_kib("RssAnon"))


def child(cfg: dict[str, Any]) -> dict[str, Any]:
    """In a fresh interpreter: build, step once, reset the peak, run one range test with `cfg["mode"]`."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    sys.path.insert(0, str(REPO))
    import clrfind

    torch.manual_seed(0)
    torch.set_num_threads(cfg["threads"])
    device = torch.device(cfg["device"])
    width, layers = cfg["width"], cfg["layers"]
    model = torch.nn.Sequential(*(torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.Tanh())
                                  for _ in range(layers))).to(device)  # fmt: skip
    x = torch.randn(cfg["batch"] * 4, width)
    loader = DataLoader(TensorDataset(x, torch.randn(cfg["batch"] * 4, width)), batch_size=cfg["batch"])
    loss_fn = torch.nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    xb, yb = (t.to(device) for t in next(iter(loader)))
    loss_fn(model(xb), yb).backward()
    optimizer.step()  # momentum buffers: the optimizer state is as large as the weights
    optimizer.zero_grad(set_to_none=True)
    del xb, yb
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    state_bytes += sum(st["momentum_buffer"].numel() * 4 for st in optimizer.state.values())
    restore = {"none": False, "device": False, "cpu": "cpu", "disk": "disk"}[cfg["mode"]]
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        with open("/proc/self/clear_refs", "w") as f:  # Linux >= 4.0: VmHWM := VmRSS
            f.write("5")
        before = _proc_kib("VmRSS") * 1024
        anon_before, anon = _proc_kib("RssAnon") * 1024, _AnonPeak()
    held: Any = None
    if cfg["mode"] == "device":  # clrfind before issue 16: a copy where the model is, held throughout
        held = (
            {k: v.detach().clone() for k, v in model.state_dict().items()},
            copy.deepcopy(optimizer.state_dict()),
        )
    started = time.perf_counter()
    result = clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-4, max_lr=1e-2, steps=cfg["steps"],
                                restore=restore, verify_bounds=False)  # fmt: skip
    if (
        held is not None
    ):  # and restored from it as it was: the model in place, a deep copy of the optimizer state
        model.load_state_dict(held[0])
        optimizer.load_state_dict(copy.deepcopy(held[1]))
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) if cuda else _proc_kib("VmHWM") * 1024
    anon_over = None if cuda else (anon.stop() * 1024 - anon_before) / MIB
    del held
    recorded = result.peak_memory
    return {
        "mode": cfg["mode"],
        "state_mib": state_bytes / MIB,
        "before_mib": before / MIB,
        "peak_mib": peak / MIB,
        "over_before_mib": (peak - before) / MIB,
        "anon_over_mib": anon_over,
        "recorded_mib": recorded.bytes / MIB if recorded else None,
        "recorded_as": recorded.measured if recorded else None,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(child(json.loads(args._child))))
        return
    rows = []
    for mode in args.modes.split(","):
        cfg = {
            "mode": mode,
            **{k: getattr(args, k) for k in ("device", "width", "layers", "batch", "steps", "threads")},
        }
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(cfg)],
                              capture_output=True, text=True, cwd=REPO, check=False)  # fmt: skip
        if proc.returncode != 0:
            print(f"{mode}: failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    what = "CUDA max_memory_allocated" if args.device.startswith("cuda") else "RSS (VmHWM)"
    if not rows:
        sys.exit("no run finished")
    print(
        f"model {args.layers} x Linear({args.width}, {args.width}), SGD momentum, {args.steps} steps on "
        f"{args.device}; model + optimizer state {rows[0]['state_mib']:.0f} MiB"
    )
    print()
    print(
        f"| restore | peak {what}, MiB | over the process before the test, MiB | anonymous over before, MiB "
        "| result.peak_memory, MiB | s |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        recorded = f"{r['recorded_mib']:.0f} ({r['recorded_as']})" if r["recorded_mib"] is not None else "-"
        label, peak, over = LABELS[r["mode"]], r["peak_mib"], r["over_before_mib"]
        anon = "-" if r["anon_over_mib"] is None else f"{r['anon_over_mib']:.0f}"
        print(f"| {label} | {peak:.0f} | {over:.0f} | {anon} | {recorded} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
