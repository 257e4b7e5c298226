"""Smoke test, part 2: JupyterLab from the server env starts and answers, and runs the kernel.

    SERVER/bin/python if_smoke_server.py KERNEL_NAME KERNEL_PREFIX

Run as the login user. Starts `jupyter lab` on a free loopback port with a throwaway token (passed in
the environment, never printed), then checks that /api/status answers 200 with the token and 403
without it; that `jupyter kernelspec list --json` and /api/kernelspecs both list KERNEL_NAME and neither
offers a kernel running the server env's own Python; that JupyterLab's settings carry the image's
overrides (no Jupyter news prompt); and that a kernel of that name starts and runs code over the kernel
websocket, reporting KERNEL_PREFIX as its sys.prefix.

Every wait is bounded (START_TIMEOUT for the server, KERNEL_TIMEOUT for the kernel to start and again for
the code to run), prints progress every PROGRESS_EVERY seconds and fails with a message naming what it
waited for; a loaded 2-core machine can take well over a minute to start a kernel. Stops the server and
removes its runtime files either way; exits non-zero on any failure, with the server log's tail.
"""

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

START_TIMEOUT = 180.0
KERNEL_TIMEOUT = 180.0
PROGRESS_EVERY = 15.0
RESEND_EVERY = 5.0
HTTP_TIMEOUT = 30.0
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(base: str, path: str, token: str | None, method: str = "GET", body: object = None) -> tuple:
    """(HTTP status, decoded JSON or None)."""
    headers = {"Authorization": f"token {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(base + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, None


def progress(waiting_for: str, started: float, timeout: float, detail: str = "") -> None:
    extra = f"; {detail}" if detail else ""
    print(f"smoke: still waiting for {waiting_for} ({time.monotonic() - started:.0f} s of at most "
          f"{timeout:.0f} s{extra})", flush=True)


def timed_out(waiting_for: str, timeout: float, detail: str = "") -> SystemExit:
    extra = f" ({detail})" if detail else ""
    return SystemExit(f"smoke: FAILED: gave up after {timeout:.0f} s waiting for {waiting_for}{extra}")


def wait_until(check: Callable[[], object], timeout: float, waiting_for: str) -> object:
    """Poll `check` every 0.5 s until it returns something true; progress while waiting."""
    started = time.monotonic()
    deadline, note = started + timeout, started + PROGRESS_EVERY
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        now = time.monotonic()
        if now >= deadline:
            raise timed_out(waiting_for, timeout)
        if now >= note:
            progress(waiting_for, started, timeout)
            note += PROGRESS_EVERY
        time.sleep(0.5)


def own_python_kernels(specs: dict) -> list:
    """Names of kernelspecs ({name: {"spec": {"argv": [...]}}}) that would run this (the server env's)
    Python: argv[0] inside sys.prefix, or a bare `python`, which jupyter_client replaces with it."""
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    found = []
    for name, entry in sorted(specs.items()):
        argv = ((entry or {}).get("spec") or {}).get("argv") or [""]
        program = str(argv[0])
        if program in bare or os.path.abspath(program).startswith(sys.prefix.rstrip("/") + "/"):
            found.append(name)
    return found


def check_kernelspecs(specs: dict, kernel: str, where: str) -> None:
    if kernel not in specs:
        raise SystemExit(f"smoke: FAILED: kernel {kernel!r} not in {where}: {sorted(specs)}")
    own = own_python_kernels(specs)
    if own:
        raise SystemExit(f"smoke: FAILED: {where} offers the server env's own Python as kernel(s) {own}; "
                         "only the recipe's kernel belongs there (KernelSpecManager.ensure_native_kernel)")


def check_settings(base: str, token: str) -> None:
    """The server env's overrides.json reaches JupyterLab: the news prompt is off."""
    code, settings = call(base, f"/lab/api/settings/{NOTIFICATION}", token)
    props = ((settings or {}).get("schema") or {}).get("properties") or {}
    if code != 200 or "fetchNews" not in props:
        print(f"smoke: WARNING: JupyterLab has no {NOTIFICATION} fetchNews setting (HTTP {code}); "
              "overrides.json not checked")
        return
    value = props["fetchNews"].get("default")
    if value != "false":
        raise SystemExit(f"smoke: FAILED: {NOTIFICATION} fetchNews is {value!r}, not 'false' "
                         "(share/jupyter/lab/settings/overrides.json of the server env not applied)")
    print("smoke: JupyterLab settings: Jupyter news off (fetchNews 'false')")


def check_server(base: str, token: str, kernel: str, server: subprocess.Popen, jupyter: str) -> str:
    """Check the server; return the id of the started kernel."""
    def status_ok() -> bool:
        if server.poll() is not None:
            raise SystemExit(f"smoke: FAILED: jupyter lab exited with code {server.returncode}")
        return call(base, "/api/status", token)[0] == 200

    wait_until(status_ok, START_TIMEOUT, "JupyterLab to answer /api/status")
    print(f"smoke: JupyterLab answers /api/status on {base} with the token")
    if call(base, "/api/status", None)[0] != 403:
        raise SystemExit("smoke: FAILED: /api/status answered without a token")
    print("smoke: /api/status refuses a request without the token (403)")
    listed = subprocess.run([jupyter, "kernelspec", "list", "--json"], capture_output=True, text=True,
                            check=False, timeout=START_TIMEOUT)
    if listed.returncode != 0:
        raise SystemExit(f"smoke: FAILED: jupyter kernelspec list --json: {listed.stderr.strip()[-500:]}")
    check_kernelspecs(json.loads(listed.stdout).get("kernelspecs", {}), kernel, "`jupyter kernelspec list`")
    specs = call(base, "/api/kernelspecs", token)[1] or {}
    check_kernelspecs(specs.get("kernelspecs", {}), kernel, "/api/kernelspecs")
    print(f"smoke: kernelspecs {sorted(specs['kernelspecs'])} (default {specs.get('default')!r})")
    check_settings(base, token)
    code, started = call(base, "/api/kernels", token, "POST", {"name": kernel})
    if code != 201 or not started:
        raise SystemExit(f"smoke: FAILED: starting kernel {kernel!r} gave HTTP {code}")
    return started["id"]


def message(msg_type: str, content: dict, channel: str = "shell") -> dict:
    header = {"msg_id": uuid.uuid4().hex, "session": uuid.uuid4().hex, "username": "smoke",
              "msg_type": msg_type, "version": "5.3"}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content,
            "channel": channel, "buffers": []}


def execute_request(code: str) -> dict:
    return message("execute_request", {"code": code, "silent": False, "store_history": False,
                                       "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})


class KernelChannel:
    """The kernel websocket (JSON protocol): send messages; receive them with a short wait that never
    drops a message (the pending read is kept, not cancelled, when the wait ends first)."""

    def __init__(self, conn: object) -> None:
        self.conn = conn
        self._read: asyncio.Future | None = None

    def send(self, msg: dict) -> None:
        self.conn.write_message(json.dumps(msg))

    async def receive(self, wait: float) -> dict | None:
        if self._read is None:
            self._read = asyncio.ensure_future(self.conn.read_message())
        done, _ = await asyncio.wait({self._read}, timeout=max(wait, 0.0))
        if not done:
            return None
        raw, self._read = self._read.result(), None
        if raw is None:
            raise SystemExit("smoke: FAILED: the server closed the kernel websocket")
        return json.loads(raw)


async def kernel_ready(chan: KernelChannel, started: float, timeout: float, state: Callable[[], str]) -> dict:
    """Ask kernel_info (again every RESEND_EVERY s) until the kernel replies on shell and publishes a
    status on iopub for one of the asks: it runs, and its output will reach us. Returns the reply.
    The wait ends `timeout` s after `started`; the server's view of the kernel is checked at each ask."""
    deadline, resend, note = started + timeout, time.monotonic(), started + PROGRESS_EVERY
    asked: set = set()
    reply, published = None, False
    while reply is None or not published:
        now = time.monotonic()
        if now >= deadline:
            raise timed_out("the kernel to answer kernel_info", timeout, f"its state: {state()}")
        if now >= resend:
            seen = state()
            ask = message("kernel_info_request", {})
            asked.add(ask["header"]["msg_id"])
            chan.send(ask)
            resend = now + RESEND_EVERY
            if now >= note:
                progress("the kernel to start", started, timeout, f"its state: {seen}")
                note = now + PROGRESS_EVERY
        msg = await chan.receive(min(resend, deadline) - time.monotonic())
        if msg is None or (msg.get("parent_header") or {}).get("msg_id") not in asked:
            continue
        if msg["header"]["msg_type"] == "kernel_info_reply":
            reply = msg["content"]
        elif msg["header"]["msg_type"] == "status":
            published = True
    return reply


async def run_request(chan: KernelChannel, code: str, timeout: float, state: Callable[[], str]) -> str:
    """Run code; wait for its execute_reply (status ok) and the kernel's idle status; return its stdout."""
    request = execute_request(code)
    chan.send(request)
    started = time.monotonic()
    deadline, note = started + timeout, started + PROGRESS_EVERY
    out, replied, idle = [], False, False
    while not (replied and idle):
        now = time.monotonic()
        if now >= deadline:
            raise timed_out("the kernel to run the test code and return to idle", timeout,
                            f"reply {'seen' if replied else 'not seen'}, its state: {state()}")
        if now >= note:
            progress("the kernel to run the test code", started, timeout, f"its state: {state()}")
            note += PROGRESS_EVERY
        msg = await chan.receive(min(note, deadline) - time.monotonic())
        if msg is None or (msg.get("parent_header") or {}).get("msg_id") != request["header"]["msg_id"]:
            continue
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content.get("text", ""))
        elif kind == "error":
            raise SystemExit(f"smoke: FAILED: the kernel raised {content.get('ename')}: {content.get('evalue')}")
        elif kind == "execute_reply":
            if content.get("status") != "ok":
                raise SystemExit(f"smoke: FAILED: the kernel's execute_reply says {content.get('status')!r}")
            replied = True
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
    return "".join(out)


def kernel_state(base: str, token: str, kernel_id: str) -> str:
    """The server's view of the kernel, for progress and errors; a dead or vanished kernel fails now."""
    try:
        code, model = call(base, f"/api/kernels/{kernel_id}?no_track_activity=1", token)
    except OSError as exc:
        return f"unknown ({exc})"
    if code == 404:
        raise SystemExit("smoke: FAILED: the kernel died; the server gave up restarting it (see its log below)")
    state = (model or {}).get("execution_state", f"unknown (HTTP {code})")
    if state == "dead":
        raise SystemExit("smoke: FAILED: the kernel died (see the server log below)")
    return state


async def open_channel(base: str, token: str, kernel_id: str, started: float, timeout: float) -> KernelChannel:
    """Open the kernel websocket by `started` + `timeout`; the server may hold the handshake until the
    kernel answers (up to its kernel_info_timeout), so the kernel is checked meanwhile."""
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.iostream import StreamClosedError
    from tornado.websocket import websocket_connect

    url = "ws" + base[len("http"):] + f"/api/kernels/{kernel_id}/channels"
    deadline, note = started + timeout, started + PROGRESS_EVERY
    while True:
        request = HTTPRequest(url, headers={"Authorization": f"token {token}"}, connect_timeout=HTTP_TIMEOUT,
                              request_timeout=max(deadline - time.monotonic(), 1.0))
        connecting = asyncio.ensure_future(websocket_connect(request))
        while not connecting.done():
            left = deadline - time.monotonic()
            if left <= 0:
                connecting.cancel()
                raise timed_out("the kernel to start and its websocket to open", timeout,
                                f"its state: {kernel_state(base, token, kernel_id)}")
            await asyncio.wait({connecting}, timeout=min(RESEND_EVERY, left))
            if not connecting.done():
                seen = kernel_state(base, token, kernel_id)
                if time.monotonic() >= note:
                    progress("the kernel to start and its websocket to open", started, timeout, f"its state: {seen}")
                    note = time.monotonic() + PROGRESS_EVERY
        try:
            return KernelChannel(connecting.result())
        except (HTTPClientError, StreamClosedError, OSError) as exc:
            if time.monotonic() + 2 >= deadline:
                raise SystemExit(f"smoke: FAILED: the kernel websocket did not open: {exc}") from None
            print(f"smoke: the kernel websocket did not open ({exc}); trying again", flush=True)
            kernel_state(base, token, kernel_id)
            await asyncio.sleep(2)


async def exercise_kernel(base: str, token: str, kernel_id: str) -> str:
    """Start-up (websocket + kernel_info) within KERNEL_TIMEOUT, then the code within KERNEL_TIMEOUT."""
    def state() -> str:
        return kernel_state(base, token, kernel_id)

    started = time.monotonic()
    chan = await open_channel(base, token, kernel_id, started, KERNEL_TIMEOUT)
    info = await kernel_ready(chan, started, KERNEL_TIMEOUT, state)
    version = (info.get("language_info") or {}).get("version", "?")
    print(f"smoke: kernel answers after {time.monotonic() - started:.0f} s (Python {version})", flush=True)
    try:
        return await run_request(chan, "import sys; print(sys.prefix)", KERNEL_TIMEOUT, state)
    finally:
        chan.conn.close()


def check_kernel(base: str, token: str, kernel_id: str, prefix: str) -> None:
    printed = asyncio.run(exercise_kernel(base, token, kernel_id)).strip()
    if printed != prefix:
        raise SystemExit(f"smoke: FAILED: the kernel runs in {printed!r}, not {prefix!r}")
    print(f"smoke: kernel runs code (sys.prefix {printed})")
    call(base, f"/api/kernels/{kernel_id}", token, "DELETE")


def main(argv: list) -> int:
    if len(argv) != 3:
        raise SystemExit("usage: if_smoke_server.py KERNEL_NAME KERNEL_PREFIX")
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    port, token = free_port(), secrets.token_hex(24)
    runtime = tempfile.mkdtemp(prefix="if-smoke-")
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTER_RUNTIME_DIR=runtime)
    # The server gives up on a silent kernel after kernel_info_timeout (60 s) and closes its websocket;
    # here it waits as long as this test does.
    argv_lab = [jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
                f"--MappingKernelManager.kernel_info_timeout={KERNEL_TIMEOUT:.0f}"]
    log = open(os.path.join(runtime, "lab.log"), "w+b")  # noqa: SIM115 - read back on failure
    server = subprocess.Popen(argv_lab, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        check_kernel(base, token, check_server(base, token, argv[1], server, jupyter), argv[2])
    except (SystemExit, Exception) as exc:  # any failure: what failed, the server log's tail, what failed
        why = str(exc.code) if isinstance(exc, SystemExit) else f"smoke: FAILED: {type(exc).__name__}: {exc}"
        print(why)
        print("smoke: the JupyterLab log's last lines:")
        log.seek(0)
        sys.stdout.write(log.read().decode(errors="replace")[-4000:].replace(token, "<token>"))
        print(f"\n{why}")
        raise SystemExit(1) from None
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
    print("smoke: JupyterLab stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
