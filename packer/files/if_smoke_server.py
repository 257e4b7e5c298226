"""Smoke test, part 2: JupyterLab from the server env starts and answers, and runs the kernel.

    SERVER/bin/python if_smoke_server.py KERNEL_NAME KERNEL_PREFIX

Run as the login user. Starts `jupyter lab` on a free loopback port with a throwaway token (passed in
the environment, never printed), then checks that /api/status answers 200 with the token and 403
without it, that /api/kernelspecs lists KERNEL_NAME, and that a kernel of that name starts and runs
code over the kernel websocket, reporting KERNEL_PREFIX as its sys.prefix. Stops the server and
removes its runtime files either way; exits non-zero on any failure.
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

START_TIMEOUT = 120.0
KERNEL_TIMEOUT = 60.0


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
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as err:
        return err.code, None


def wait_until(check: object, timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise SystemExit(f"smoke: FAILED: {what} within {timeout:.0f} s")


def check_server(base: str, token: str, kernel: str, server: subprocess.Popen) -> str:
    """Check the server; return the id of the started kernel."""
    def status_ok() -> bool:
        if server.poll() is not None:
            raise SystemExit(f"smoke: FAILED: jupyter lab exited with code {server.returncode}")
        return call(base, "/api/status", token)[0] == 200

    wait_until(status_ok, START_TIMEOUT, "JupyterLab did not answer /api/status")
    print(f"smoke: JupyterLab answers /api/status on {base} with the token")
    if call(base, "/api/status", None)[0] != 403:
        raise SystemExit("smoke: FAILED: /api/status answered without a token")
    print("smoke: /api/status refuses a request without the token (403)")
    specs = call(base, "/api/kernelspecs", token)[1] or {}
    if kernel not in specs.get("kernelspecs", {}):
        raise SystemExit(f"smoke: FAILED: kernel {kernel!r} not in {sorted(specs.get('kernelspecs', {}))}")
    print(f"smoke: kernelspecs {sorted(specs['kernelspecs'])} (default {specs.get('default')!r})")
    code, started = call(base, "/api/kernels", token, "POST", {"name": kernel})
    if code != 201 or not started:
        raise SystemExit(f"smoke: FAILED: starting kernel {kernel!r} gave HTTP {code}")
    return started["id"]


def execute_request(code: str) -> dict:
    header = {"msg_id": uuid.uuid4().hex, "session": uuid.uuid4().hex, "username": "smoke",
              "msg_type": "execute_request", "version": "5.3"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {},
               "allow_stdin": False, "stop_on_error": True}
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content,
            "channel": "shell", "buffers": []}


async def run_code(base: str, token: str, kernel_id: str, code: str) -> str:
    """Run code in the kernel over its websocket (JSON protocol); return its stdout."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = "ws" + base[len("http"):] + f"/api/kernels/{kernel_id}/channels"
    conn = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    request = execute_request(code)
    conn.write_message(json.dumps(request))
    out, replied, idle = [], False, False
    while not (replied and idle):
        raw = await asyncio.wait_for(conn.read_message(), KERNEL_TIMEOUT)
        if raw is None:
            raise SystemExit("smoke: FAILED: the kernel websocket closed")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != request["header"]["msg_id"]:
            continue
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            out.append(content.get("text", ""))
        elif kind == "error":
            raise SystemExit(f"smoke: FAILED: the kernel raised {content.get('ename')}: {content.get('evalue')}")
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
    conn.close()
    return "".join(out)


def check_kernel(base: str, token: str, kernel_id: str, prefix: str) -> None:
    printed = asyncio.run(run_code(base, token, kernel_id, "import sys; print(sys.prefix)")).strip()
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
    argv_lab = [jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0"]
    log = open(os.path.join(runtime, "lab.log"), "w+b")  # noqa: SIM115 - read back on failure
    server = subprocess.Popen(argv_lab, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        check_kernel(base, token, check_server(base, token, argv[1], server), argv[2])
    except (SystemExit, OSError, asyncio.TimeoutError) as exc:  # noqa: UP041 - distinct from TimeoutError on 3.10
        if not isinstance(exc, SystemExit):
            print(f"smoke: FAILED: {type(exc).__name__}: {exc}")
        log.seek(0)
        sys.stdout.write(log.read().decode(errors="replace")[-4000:].replace(token, "<token>"))
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
