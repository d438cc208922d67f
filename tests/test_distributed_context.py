"""`distributed_context` under a launcher (torch.distributed's calls recorded, not made): the ranks of a job that
finished wait for each other before the group is torn down; a rank that failed does not wait, and a wait that a
departed peer ends with an error still tears the group down."""

from __future__ import annotations

import pytest
import torch.distributed as dist

from clrfind.distributed import distributed_context


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Rank 0 of 2, as torchrun sets it up; what the context asks of torch.distributed, in order."""
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "2")):
        monkeypatch.setenv(name, value)
    made: list[str] = []
    up = {"group": False}

    def init(backend: str) -> None:
        made.append(f"init {backend}")
        up["group"] = True

    def destroy() -> None:
        made.append("destroy")
        up["group"] = False

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: up["group"])
    monkeypatch.setattr(dist, "init_process_group", init)
    monkeypatch.setattr(dist, "destroy_process_group", destroy)
    monkeypatch.setattr(dist, "barrier", lambda: made.append("barrier"))
    return made


def test_a_finished_rank_waits_for_the_others_before_the_teardown(calls: list[str]) -> None:
    with distributed_context("cpu") as ctx:
        assert (ctx.rank, ctx.world_size, ctx.backend) == (0, 2, "gloo")
        calls.append("run")
    assert calls == ["init gloo", "run", "barrier", "destroy"]


def test_a_failed_rank_tears_down_without_waiting(calls: list[str]) -> None:
    with pytest.raises(RuntimeError, match="boom"), distributed_context("cpu"):
        raise RuntimeError("boom")
    assert calls == ["init gloo", "destroy"]


def test_a_wait_that_a_departed_peer_breaks_still_tears_down(
    calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> None:
        calls.append("barrier")
        raise RuntimeError("Connection closed by peer")

    monkeypatch.setattr(dist, "barrier", broken)
    with distributed_context("cpu"):
        pass
    assert calls == ["init gloo", "barrier", "destroy"]


class _StoreWithoutCheck:
    """torch < 2.3's PrefixStore: add, set, get and wait, but no `check`."""

    def __init__(self, store: dist.Store) -> None:
        self.add, self.set, self.get, self.wait = store.add, store.set, store.get, store.wait


@pytest.mark.parametrize("old", [False, True], ids=["store", "store-without-check"])
def test_a_failure_one_rank_records_is_what_the_others_read(old: bool) -> None:
    from clrfind.distributed import Peers

    shared = dist.PrefixStore("default_pg", dist.HashStore())
    store = _StoreWithoutCheck(shared) if old else shared
    failing, other, later = Peers(1, store), Peers(0, store), Peers(0, store)
    assert other.first_failure() is None and other.caused_by_peer() is None
    assert failing.record("step.target 'hooks.py:step' raised ValueError at step 4: boom")
    assert other.caused_by_peer() == (1, "step.target 'hooks.py:step' raised ValueError at step 4: boom")
    assert failing.caused_by_peer() is None  # its own failure is not a peer's
    # A second failure is not the first: its rank does not report it.
    assert not later.record("rank 0's broken collective")
    assert other.first_failure() == (1, "step.target 'hooks.py:step' raised ValueError at step 4: boom")
