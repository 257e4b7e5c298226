"""Smoke test, part 2: JupyterLab from the server env starts and answers, and the kernel runs code.

    SERVER/bin/python if_smoke_server.py KERNEL_NAME KERNEL_PREFIX

Run as the login user. Starts `jupyter lab` on a free loopback port with a throwaway token (passed in
the environment, never printed), then checks over HTTP that /api/status answers 200 with the token and
403 without it; that `jupyter kernelspec list --json` and /api/kernelspecs both list KERNEL_NAME and
neither offers a kernel running the server env's own Python; and that JupyterLab's settings carry the
image's overrides (no Jupyter news prompt). Then it starts KERNEL_NAME from its kernelspec with
jupyter_client, as JupyterLab does, and runs code in it, which must report KERNEL_PREFIX as sys.prefix.

Every wait is bounded (START_TIMEOUT for the server, KERNEL_TIMEOUT for the kernel to start and again for
the code to run) and fails with a message naming what it waited for; a loaded 2-core machine can take
well over a minute to start a kernel. Stops the server and removes its runtime files either way; exits
non-zero on any failure, with the server log's tail.
"""

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
from collections.abc import Callable

START_TIMEOUT = 180.0
KERNEL_TIMEOUT = 180.0
PROGRESS_EVERY = 15.0
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


def check_server(base: str, token: str, kernel: str, server: subprocess.Popen, jupyter: str) -> None:
    """The HTTP checks: status with and without the token, the kernelspecs, the settings."""
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


def check_kernel(kernel: str, prefix: str) -> None:
    """Start the kernel from its kernelspec as JupyterLab does (jupyter_client), run code in it, and
    check it runs in the kernel env (sys.prefix). Both waits are bounded by KERNEL_TIMEOUT."""
    from jupyter_client.manager import start_new_kernel

    started = time.monotonic()
    print(f"smoke: starting kernel {kernel!r} (waiting at most {KERNEL_TIMEOUT:.0f} s)", flush=True)
    try:
        manager, client = start_new_kernel(kernel_name=kernel, startup_timeout=KERNEL_TIMEOUT)
    except RuntimeError as exc:
        raise timed_out(f"kernel {kernel!r} to start", KERNEL_TIMEOUT, str(exc)) from None
    output: list = []

    def collect(msg: dict) -> None:
        if msg["header"]["msg_type"] == "stream":
            output.append(msg["content"].get("text", ""))
        elif msg["header"]["msg_type"] == "error":
            output.append(f"{msg['content'].get('ename')}: {msg['content'].get('evalue')}")

    try:
        print(f"smoke: kernel answers after {time.monotonic() - started:.0f} s", flush=True)
        try:
            reply = client.execute_interactive("import sys; print(sys.prefix)", timeout=KERNEL_TIMEOUT,
                                               output_hook=collect)
        except TimeoutError:
            raise timed_out("the kernel to run the test code", KERNEL_TIMEOUT) from None
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    printed = "".join(output).strip()
    if reply["content"].get("status") != "ok":
        raise SystemExit(f"smoke: FAILED: the kernel's execute_reply says {reply['content'].get('status')!r}: "
                         f"{printed[-500:]}")
    if printed != prefix:
        raise SystemExit(f"smoke: FAILED: the kernel runs in {printed!r}, not {prefix!r}")
    print(f"smoke: kernel runs code (sys.prefix {printed})")


def main(argv: list) -> int:
    if len(argv) != 3:
        raise SystemExit("usage: if_smoke_server.py KERNEL_NAME KERNEL_PREFIX")
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    port, token = free_port(), secrets.token_hex(24)
    runtime = tempfile.mkdtemp(prefix="if-smoke-")
    os.environ["JUPYTER_RUNTIME_DIR"] = runtime  # the kernel's connection file, too
    env = dict(os.environ, JUPYTER_TOKEN=token)
    argv_lab = [jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0"]
    log = open(os.path.join(runtime, "lab.log"), "w+b")  # noqa: SIM115 - read back on failure
    server = subprocess.Popen(argv_lab, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        check_server(base, token, argv[1], server, jupyter)
        check_kernel(argv[1], argv[2])
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
