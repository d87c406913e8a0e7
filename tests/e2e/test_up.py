"""`make run`'s promise: `prevent up` on embedded defaults shows the demo notice on the console
within 30 seconds, and Ctrl-C stops everything, embedded broker included."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from prevent.platform.netutil import free_port

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def _tansu(pid: int) -> bool:
    try:
        return b"tansu" in (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def tansu_pids(ancestor: int) -> set[int]:
    """The embedded brokers among ``ancestor``'s descendants: only this test's, when other
    tests (pytest-xdist workers) run brokers of their own at the same time."""
    parent: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:  # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue

    def descends(pid: int) -> bool:
        for _ in range(64):
            pid = parent.get(pid, 0)
            if pid == ancestor:
                return True
            if pid <= 1:
                return False
        return False

    return {pid for pid in parent if descends(pid) and _tansu(pid)}


def test_up_shows_the_demo_notice_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREVENT_")}
    env |= {"PREVENT_VAR_DIR": str(tmp_path / "var"), "PREVENT_HTTP_PORT": str(port)}
    # The console needs a signed-in user: add one the way an operator would.
    # /overview shows contact details: a role that may read the registry (issue 23, L5).
    subprocess.run([sys.executable, "-m", "prevent", "users", "add", "demo-officer", "--role",
                    "engagement_officer"],
                   cwd=tmp_path, env=env, input=b"demo officer password\n", check=True)
    proc = subprocess.Popen([sys.executable, "-m", "prevent", "up"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    console = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=2)
    try:
        started = time.monotonic()
        page = ""
        while time.monotonic() - started < 30:
            try:
                if "prevent_session" not in console.cookies:
                    form = console.get("/signin").text  # the pre-session token (login CSRF)
                    token = form.split('name="signin_token" value="', 1)[1].split('"', 1)[0]
                    console.post("/signin", data={"name": "demo-officer", "signin_token": token,
                                                  "password": "demo officer password"})
                page = console.get("/overview").text
            except httpx.TransportError:
                page = ""
            if "Message-ID" in page:
                break
            time.sleep(0.5)
        assert "Demo outbox" in page and "Message-ID" in page, "no demo notice within 30 s"
        assert "Riverside Islamic Centre" in page or "mosque" in page
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").json() == {"status": "ok"}
        ours = tansu_pids(proc.pid)
        assert ours, "the embedded broker should be running"
    finally:
        console.close()  # its kept-alive connection: a ResourceWarning when left to the GC
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode(errors="replace")
    assert proc.returncode == 0, output[-3000:]
    deadline = time.monotonic() + 10
    while any(_tansu(pid) for pid in ours) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_tansu(pid) for pid in ours), "Ctrl-C left the embedded broker running"
