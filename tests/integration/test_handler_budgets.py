"""Budgets per user: the rate limit counts cores per (uid, executable), and one uid holds at most
max_captures_per_user of the capture slots. The real handler, fed a real core with -u<uid>."""
import os
import subprocess

import pctest
from test_handler import recommended


def as_uid(pid, uid, **kw):
    return [a if not a.startswith("-u") else f"-u{uid}" for a in recommended(pid, **kw)]


def reasons_of(records, uid):
    return sorted(r["core"]["reason"] for r in records if r["uid"] == uid)


def test_rate_limit_is_per_user(run_handler, real_core):
    """uid 1000 using up its burst for an executable costs no other user a core of it."""
    data, pid = real_core
    for _ in range(3):
        _, recs = run_handler(as_uid(pid, 1000), stdin=data, rate_limit_burst=2)
    assert reasons_of(recs, 1000) == ["rate_limited", "stored", "stored"]
    # root, a system user and another regular user each have a burst of their own.
    for uid in (0, 998, 1001):
        _, recs = run_handler(as_uid(pid, uid), stdin=data, rate_limit_burst=2)
        assert reasons_of(recs, uid) == ["stored"], uid
    # The exhausted user stays limited, on any host name.
    _, recs = run_handler(as_uid(pid, 1000, host="elsewhere"), stdin=data, rate_limit_burst=2)
    assert [r["core"]["reason"] for r in recs if r["hostname"] == "elsewhere"] == ["rate_limited"]


def test_rate_limit_without_uid_is_per_executable(run_handler, real_core):
    """Without %u there is no uid to trust (the core's is its own namespace's): the budget is
    the executable's, whoever crashed."""
    data, pid = real_core
    args = [a for a in recommended(pid) if not a.startswith("-u")]
    for _ in range(3):
        _, recs = run_handler(args, stdin=data, rate_limit_burst=2)
    assert sorted(r["core"]["reason"] for r in recs) == ["rate_limited", "stored", "stored"]


def start_stalled(handler, conf, args, data):
    """A handler whose core stream stalls after the first pipeful; returns (proc, writer fd)."""
    r_fd, w_fd = os.pipe()
    proc = subprocess.Popen([str(handler), "--config", str(conf), *args], stdin=r_fd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(r_fd)
    os.write(w_fd, data[:65536])
    return proc, w_fd


def test_one_user_cannot_hold_every_capture_slot(handler, tmp_path, store, real_core):
    """Stalled dumps of uid 1000 hold at most max_captures_per_user slots: its next crash is
    recorded lean, while root's crash still gets a full capture."""
    data, pid = real_core
    conf = pctest.write_config(tmp_path / "pc.conf", store, max_captures=4,
                               max_captures_per_user=2, capture_timeout=120, rate_limit_burst=0)
    stalled = []
    try:
        for _ in range(2):
            stalled.append(start_stalled(handler, conf, as_uid(pid, 1000), data))
        # Each is capturing once it has its unnamed core file open in the store.
        for proc, _ in stalled:
            pctest.wait_until(lambda: pctest.open_files(proc.pid, str(store)), 60,
                              what=f"handler {proc.pid} capturing")

        def run(uid):
            proc = subprocess.run([str(handler), "--config", str(conf), *as_uid(pid, uid)],
                                  input=data, capture_output=True, timeout=60)
            assert proc.returncode == 0, proc.stderr
            return [r for r in pctest.records(store) if r["uid"] == uid]

        mine = run(1000)
        assert [r["core"]["reason"] for r in mine] == ["busy"]
        assert "max_captures_per_user" in mine[0]["core"]["error"]
        assert "uid 1000" in mine[0]["core"]["error"]
        root = run(0)
        assert [r["core"]["reason"] for r in root] == ["stored"]
    finally:
        for proc, w_fd in stalled:
            os.close(w_fd)
            proc.wait(timeout=60)
    # The stalled ones end as usual once their streams do (with the pipeful they got).
    assert sorted(r["core"]["reason"] for r in pctest.records(store) if r["uid"] == 1000) == \
        ["busy", "truncated", "truncated"]
