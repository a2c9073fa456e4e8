"""The output lock: one holder at a time, its name in the refusal, nothing stale after the holder dies.

Local outputs use `fcntl.flock` (released by the kernel); remote ones an advisory lock object, tested
on fsspec's in-memory filesystem.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import fsspec
import pytest

from tasks.common.lock import LOCK_NAME, OutputLocked, output_lock
from tests.conftest import REPO

HOLD = "import sys, time\nfrom tasks.common.lock import output_lock\nwith output_lock(sys.argv[1]):\n" \
       "    print('held', flush=True)\n    time.sleep(60)\n"


def _holder(output: str) -> subprocess.Popen:
    """A child process that takes the lock and keeps it until killed."""
    child = subprocess.Popen([sys.executable, "-c", HOLD, output], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_local_lock_refuses_a_second_holder_and_names_the_first(tmp_path):
    out = str(tmp_path / "out")
    with output_lock(out) as owner:
        assert owner["pid"] > 0 and owner["host"] == socket.gethostname()
        with pytest.raises(OutputLocked) as refused, output_lock(out):
            pass
        message = str(refused.value)
        assert f"locked by pid {owner['pid']} on host {owner['host']} since {owner['since']}" in message
        assert f"{out}/{LOCK_NAME}" in message and refused.value.holder == owner
    with output_lock(out):  # released on exit
        pass


def test_local_lock_held_by_another_process_is_freed_by_its_sigkill(tmp_path):
    out = str(tmp_path / "out")
    child = _holder(out)
    try:
        with pytest.raises(OutputLocked, match=f"locked by pid {child.pid} "), output_lock(out):
            pass
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with output_lock(out) as owner:  # no stale lock after the crash, and the record names the new holder
        assert json.loads((tmp_path / "out" / LOCK_NAME).read_text())["pid"] == owner["pid"]


def test_local_lock_survives_pickling_of_its_error(tmp_path):
    import pickle

    out = str(tmp_path / "out")
    with output_lock(out), pytest.raises(OutputLocked) as refused, output_lock(out):
        pass
    assert str(pickle.loads(pickle.dumps(refused.value))) == str(refused.value)  # Prefect stores failed states


@pytest.fixture
def memory_output():
    url = "memory://lock-test/out"
    yield url
    fs = fsspec.filesystem("memory")
    if fs.exists("/lock-test"):
        fs.rm("/lock-test", recursive=True)


def test_remote_lock_is_an_object_naming_its_holder_and_removed_on_exit(memory_output):
    fs = fsspec.filesystem("memory")
    with output_lock(memory_output) as owner:
        assert json.loads(fs.cat_file(f"/lock-test/out/{LOCK_NAME}"))["token"] == owner["token"]
        with pytest.raises(OutputLocked, match="delete the lock object") as refused, output_lock(memory_output):
            pass
        assert f"pid {owner['pid']} on host {owner['host']}" in str(refused.value)
    assert not fs.exists(f"/lock-test/out/{LOCK_NAME}")


def test_remote_lock_of_a_dead_process_on_this_host_is_taken_over(memory_output):
    fs = fsspec.filesystem("memory")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(dead.stdout), "host": socket.gethostname(), "since": "2026-01-01T00:00:00Z", "token": "x"}
    fs.pipe_file(f"/lock-test/out/{LOCK_NAME}", json.dumps(record).encode())
    with output_lock(memory_output) as owner:
        assert json.loads(fs.cat_file(f"/lock-test/out/{LOCK_NAME}"))["token"] == owner["token"]
    record["host"] = "some-other-machine"  # a holder elsewhere cannot be checked: refused, never stolen
    fs.pipe_file(f"/lock-test/out/{LOCK_NAME}", json.dumps(record).encode())
    with pytest.raises(OutputLocked, match="some-other-machine"), output_lock(memory_output):
        pass


# ---- stale-lock takeover races (deterministic: the second locker runs inside a hook of the first) ------------


def _stale_lock(fs) -> bytes:  # noqa: ANN001
    """A lock object left by a process of this host that is dead: the one kind a run may take over."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(dead.stdout), "host": socket.gethostname(), "since": "2026-01-01T00:00:00Z", "token": "s"}
    data = json.dumps(record).encode()
    fs.pipe_file(f"/lock-test/out/{LOCK_NAME}", data)
    return data


def _race(monkeypatch, fs, method: str, output: str, after: bool) -> dict:  # noqa: ANN001
    """Make the first locker's first `fs.<method>` call on the lock object run a whole second locker ("B")
    just `after` (or before) it; returns what B got: {"owner": its record, "ctx": ...} or {"refused": error}."""
    lock_path = f"/lock-test/out/{LOCK_NAME}"
    real = getattr(fs, method)
    seen = {"calls": 0, "inside": False}
    second: dict = {}

    def run_second() -> None:
        seen["inside"] = True
        ctx = output_lock(output)
        try:
            second["owner"], second["ctx"] = ctx.__enter__(), ctx
        except OutputLocked as exc:
            second["refused"] = exc
        seen["inside"] = False

    def hooked(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        first = path.rstrip("/").endswith(lock_path) and not seen["inside"] and not seen["calls"]
        if first:
            seen["calls"] += 1
            if not after:
                run_second()
        result = real(path, *args, **kwargs)
        if first and after:
            run_second()
        return result

    monkeypatch.setattr(fs, method, hooked)
    return second


def _lock_token(fs) -> str:  # noqa: ANN001
    return json.loads(fs.cat_file(f"/lock-test/out/{LOCK_NAME}"))["token"]


def test_stale_lock_taken_over_by_another_run_between_read_and_delete_is_not_deleted(memory_output, monkeypatch):
    """B takes the stale lock over right after A read it: A must not delete B's fresh lock, and is refused."""
    fs = fsspec.filesystem("memory")
    _stale_lock(fs)
    second = _race(monkeypatch, fs, "cat_file", memory_output, after=True)
    with pytest.raises(OutputLocked) as refused, output_lock(memory_output):
        pass
    assert "owner" in second, second.get("refused")  # B took the stale lock over
    assert _lock_token(fs) == second["owner"]["token"]  # and still holds it: A deleted nothing of B's
    assert refused.value.holder["token"] == second["owner"]["token"]  # A names the new holder
    second["ctx"].__exit__(None, None, None)
    assert not fs.exists(f"/lock-test/out/{LOCK_NAME}")


def test_two_takeovers_of_one_stale_lock_give_it_to_one_run(memory_output, monkeypatch):
    """B tries the same takeover while A is about to delete the stale lock: exactly one of them holds it."""
    fs = fsspec.filesystem("memory")
    _stale_lock(fs)
    second = _race(monkeypatch, fs, "rm", memory_output, after=False)
    with output_lock(memory_output) as owner:
        assert "refused" in second, "both runs hold the lock"
        assert "takeover" in str(second["refused"])  # B says a takeover is under way, and what to delete if stuck
        assert _lock_token(fs) == owner["token"]
    assert not fs.exists(f"/lock-test/out/{LOCK_NAME}")
    assert not fs.glob(f"/lock-test/out/{LOCK_NAME}.takeover-*")  # the claim is gone with the takeover
