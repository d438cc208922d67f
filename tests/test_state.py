"""The caller's state while the library trains on it: restored exactly from a host copy or a temporary file, no
copy kept on the model's device, the peak memory recorded, and a re-test from a trained state marked as such."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_same_state, state_of, warm_up

import clrfind
from clrfind.errors import UsageError
from clrfind.state import StateSnapshot, has_trained_state


def _state_bytes(model, optimizer) -> int:
    tensors = list(model.state_dict().values())
    tensors += [t for st in optimizer.state.values() for t in st.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("restore", [True, "cpu", "disk"])
def test_every_restore_mode_leaves_the_state_exactly_as_it_was(tiny_task, restore) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    warm_up(model, loader, loss_fn, optimizer)
    before = state_of(model, optimizer)
    result = clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=40,
                                restore=restore)  # fmt: skip
    assert result.steps_run >= 10 and result.verification is not None  # the trials restored from it too
    assert_same_state(before, model, optimizer)


def test_snapshots_hold_a_host_copy_or_nothing(tiny_task) -> None:
    """ "cpu" holds exactly one copy of the model and optimizer state, on the host; "disk" holds no tensor at all,
    only a file, which close() removes. Neither holds anything on the model's device (here the host, so "cpu"'s
    copy is there: on a GPU it would be the only copy off the device)."""
    model, loader, loss_fn, optimizer = tiny_task
    warm_up(model, loader, loss_fn, optimizer)
    host = StateSnapshot(model, optimizer, where="cpu")
    assert host.held_bytes() == {"cpu": _state_bytes(model, optimizer)} and host.path is None
    disk = StateSnapshot(model, optimizer, where="disk")
    assert disk.held_bytes() == {}
    assert disk.path is not None and disk.path.stat().st_size > _state_bytes(model, optimizer)
    before = state_of(model, optimizer)
    warm_up(model, loader, loss_fn, optimizer)  # move away from the snapshot, then back
    disk.restore()
    assert_same_state(before, model, optimizer)
    disk.close()
    assert not disk.path.exists()


def test_the_disk_copy_exists_during_the_run_and_is_removed_after(tiny_task, tmp_path, monkeypatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    model, loader, loss_fn, optimizer = tiny_task
    during: list[int] = []

    def callback(event) -> None:
        during.append(len(list(tmp_path.glob("clrfind-state-*.pt"))))

    clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=30, restore="disk",
                       callback=callback, verify_bounds=False)  # fmt: skip
    assert during and set(during) == {1}
    assert list(tmp_path.iterdir()) == []


def test_a_disk_copy_that_cannot_be_written_is_an_output_error(tiny_task, tmp_path, monkeypatch) -> None:
    import tempfile

    from clrfind.errors import OutputError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    model, loader, loss_fn, optimizer = tiny_task
    before = state_of(model, optimizer)
    with pytest.raises(
        OutputError, match=r"restore='disk': cannot write the model and optimizer state to .*missing"
    ):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, restore="disk")
    assert_same_state(before, model, optimizer)


def test_a_bad_restore_mode_is_a_usage_error(tiny_task) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    with pytest.raises(UsageError, match="restore: expected True, False, 'cpu' or 'disk', got 'gpu'"):
        clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=1.0, restore="gpu")  # type: ignore[arg-type]


def test_the_results_record_the_peak_memory(tiny_task, tmp_path) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    result = clrfind.range_test(model, loader, loss_fn, optimizer, min_lr=1e-3, max_lr=20.0, steps=20,
                                verify_bounds=False)  # fmt: skip
    assert result.peak_memory is not None and result.peak_memory.measured == "process_max_rss"
    assert result.peak_memory.bytes > 10 * 2**20  # a process that imported torch
    assert clrfind.load_results(result.save(tmp_path)).peak_memory == result.peak_memory


def test_a_re_test_in_mid_training_starts_from_its_state_and_says_so(tiny_task) -> None:
    model, loader, loss_fn, optimizer = tiny_task
    warm_up(model, loader, loss_fn, optimizer, steps=8)
    loader = torch.utils.data.DataLoader(loader.dataset, batch_size=32)  # the same batches for both tests
    before = state_of(model, optimizer)
    kwargs = {"min_lr": 1e-3, "max_lr": 20.0, "steps": 40, "seed": 0, "verify_bounds": False}
    again = clrfind.range_test(model, loader, loss_fn, optimizer, **kwargs)
    assert_same_state(before, model, optimizer)
    assert again.from_trained_state and again.bounds is not None
    # The same weights with a fresh optimizer: the same first loss, then other steps (no momentum carried in).
    fresh = clrfind.range_test(model, loader, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                               **kwargs)  # fmt: skip
    assert not fresh.from_trained_state
    assert again.losses[0] == fresh.losses[0] and again.losses[1:4] != fresh.losses[1:4]
    title = again.plot().axes[0].get_title()
    assert "re-tested from a trained state" in title and "re-tested" not in fresh.plot().axes[0].get_title()


def test_trained_state_means_the_optimizer_has_stepped() -> None:
    params = [torch.nn.Parameter(torch.ones(3))]
    adagrad = torch.optim.Adagrad(params)  # makes its state, at step 0, when it is built
    sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    assert adagrad.state and not has_trained_state(adagrad) and not has_trained_state(sgd)
    params[0].grad = torch.ones(3)
    adagrad.step()
    sgd.step()
    assert has_trained_state(adagrad) and has_trained_state(sgd)
