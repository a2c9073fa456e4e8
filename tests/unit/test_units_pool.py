"""The worker pool (tasks/common/pool.py): a dead worker fails only its own call; the pool keeps working."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.common.pool import WorkerDied, WorkerPool, describe_exit


def test_describe_exit_names_the_signal():
    assert describe_exit(-9) == "SIGKILL, exit -9"
    assert describe_exit(-11) == "SIGSEGV, exit -11"
    assert describe_exit(3) == "exit 3"
    assert describe_exit(None) == "exit unknown"


@pytest.fixture(scope="module")
def pool():
    p = WorkerPool(2)
    yield p
    p.close()


def test_dead_worker_fails_only_its_call_and_the_pool_goes_on(pool):
    """A ProcessPoolExecutor(2) fails both calls here (BrokenProcessPool); the slots keep the sleeper alive."""
    with ThreadPoolExecutor(2) as calls:
        slow = calls.submit(pool.run, "slow.txt", time.sleep, 2.0)  # runs on the other worker meanwhile
        time.sleep(0.5)
        killed = calls.submit(pool.run, "unit b.txt", signal.raise_signal, signal.SIGKILL)
        with pytest.raises(WorkerDied, match=r"unit b\.txt: its worker process died \(SIGKILL, exit -9\)"):
            killed.result(timeout=60)
        assert slow.result(timeout=60) is None
    assert [pool.run("c.txt", pow, 2, 10) for _ in range(3)] == [1024] * 3  # the replacement worker takes work


def test_an_exception_in_the_call_is_not_a_worker_death(pool):
    with pytest.raises(ZeroDivisionError):
        pool.run("e.txt", divmod, 1, 0)
    assert pool.run("f.txt", pow, 3, 2) == 9
