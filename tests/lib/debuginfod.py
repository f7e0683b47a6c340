"""A real debuginfod (elfutils) on 127.0.0.1 for the tests that fetch files by build-id."""
import contextlib
import socket
import subprocess
import urllib.error
import urllib.request

import pctest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(served, tmp_path, ready):
    """A real debuginfod on 127.0.0.1 serving the directory `served`; yields its URL once it
    serves `ready` (e.g. /buildid/<id>/debuginfo: the directory has been scanned)."""
    url = f"http://127.0.0.1:{free_port()}"
    server = subprocess.Popen(["debuginfod", "-F", "-p", url.rsplit(":", 1)[1], "-d",
                               str(tmp_path / "db.sqlite"), str(served)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only

    def serves():
        try:
            with direct.open(url + ready, timeout=2):
                return True
        except (urllib.error.URLError, ConnectionError):
            return server.poll() is not None  # exited: fails below
    try:
        pctest.wait_until(serves, timeout=30, what=f"debuginfod serving {ready}")
        assert server.poll() is None, f"debuginfod exited with {server.returncode}"
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
