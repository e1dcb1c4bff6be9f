"""SQLite's instance locks: a byte per key of one file, held with open-file-description locks.
Two holders in one process exclude each other as two processes do, and a killed holder's keys
are free at once (what the store's own tests check through a ledger, here at the lock alone)."""

import subprocess
import sys
import time
from pathlib import Path

from store.locks import FileLocks

HOLD = """
import sys, time
from pathlib import Path
from store.locks import FileLocks
locks = FileLocks(Path(sys.argv[1]))
held = locks.take(["instance-1"])
print("held" if "instance-1" in held.keys else "busy", flush=True)
time.sleep(60)
"""


def test_two_holders_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    first, second = FileLocks(tmp_path / "s.db.lock"), FileLocks(tmp_path / "s.db.lock")
    held = first.take(["a", "b"])
    assert held.keys == {"a", "b"}
    rival = second.take(["a", "c"])
    assert (set(rival.keys), set(rival.busy)) == ({"c"}, {"a"})
    held.release(["a"])
    assert set(second.take(["a"]).keys) == {"a"}
    assert set(first.take(["a", "b"]).busy) == {"a", "b"}  # b: held by `first` itself already


def test_a_killed_holder_frees_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "s.db.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        locks = FileLocks(path)
        assert set(locks.take(["instance-1"]).busy) == {"instance-1"}
        holder.kill()
        holder.wait()
        deadline = time.monotonic() + 5
        while locks.take(["instance-1"]).busy:
            assert time.monotonic() < deadline, "the dead holder's key stayed taken"
            time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
