"""Smoke test, part 2: JupyterLab from the server env starts and answers, and the kernel runs code.

    SERVER/bin/python if_smoke_server.py KERNEL_NAME KERNEL_PREFIX [PIDFILE]

Run as the login user, in the repository (JupyterLab's root folder). Starts `jupyter lab` on a free
loopback port with a throwaway token (passed in the environment, never printed) first, since it takes
longest, and while it boots: starts KERNEL_NAME from its kernelspec with jupyter_client, as JupyterLab
does, in a thread (KernelCheck), and runs code in it, which must report KERNEL_PREFIX as sys.prefix; and
runs `jupyter kernelspec list --json` (printed as `jupyter kernelspec list` prints it), which must list
KERNEL_NAME and no kernel running the server env's own Python. Then it checks over HTTP that /api/status
answers 200 with the token and 403 without it; that /api/kernelspecs lists KERNEL_NAME and not the server
env's own Python; and that JupyterLab's settings carry the image's overrides (no Jupyter news prompt).
What is found is reported in that order (the listing, the server, the kernel), whatever finished first.

Every wait is bounded (START_TIMEOUT for the server, KERNEL_TIMEOUT for the kernel to start and again for
the code to run), polled every POLL seconds with progress every PROGRESS_EVERY, and fails with a message
naming what it waited for; a loaded 2-core machine can take well over a minute to start a kernel. Stops
the kernel and the server and removes its runtime files either way, also on SIGTERM (80-smoke's, when a
check it runs meanwhile failed; PIDFILE receives this process's id for it). Exits 0 when all passed,
NOT_LISTED (3) when `jupyter kernelspec list` does not list KERNEL_NAME, 1 on any other failure, with the
server log's tail.
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

START_TIMEOUT = 180.0
KERNEL_TIMEOUT = 180.0
PROGRESS_EVERY = 15.0
POLL = 0.05
HTTP_TIMEOUT = 30.0
NOT_LISTED = 3
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


class NotListed(SystemExit):
    """`jupyter kernelspec list` does not list the kernel (exit status NOT_LISTED)."""


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
    """Poll `check` every POLL seconds until it returns something true; progress while waiting."""
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
        time.sleep(POLL)


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


def check_listing(jupyter: str, kernel: str) -> None:
    """`jupyter kernelspec list --json`, printed as the plain `jupyter kernelspec list` prints it: it lists
    the kernel (else NotListed) and no kernel running the server env's own Python."""
    listed = subprocess.run([jupyter, "kernelspec", "list", "--json"], capture_output=True, text=True,
                            check=False, timeout=START_TIMEOUT)
    if listed.returncode != 0:
        raise SystemExit(f"smoke: FAILED: jupyter kernelspec list --json: {listed.stderr.strip()[-500:]}")
    specs = json.loads(listed.stdout).get("kernelspecs", {})
    width = max((len(name) for name in specs), default=0)
    print("Available kernels:\n" + "".join(f"  {name.ljust(width)}    {entry.get('resource_dir', '')}\n"
                                           for name, entry in sorted(specs.items())), end="", flush=True)
    if kernel not in specs:
        raise NotListed(f"smoke: FAILED: kernel {kernel!r} is not listed by `jupyter kernelspec list`: "
                        f"{sorted(specs)}")
    check_kernelspecs(specs, kernel, "`jupyter kernelspec list`")


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


def check_server(base: str, token: str, kernel: str, server: subprocess.Popen) -> None:
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
    specs = call(base, "/api/kernelspecs", token)[1] or {}
    check_kernelspecs(specs.get("kernelspecs", {}), kernel, "/api/kernelspecs")
    print(f"smoke: kernelspecs {sorted(specs['kernelspecs'])} (default {specs.get('default')!r})")
    check_settings(base, token)


class KernelCheck(threading.Thread):
    """Start the kernel from its kernelspec as JupyterLab does (jupyter_client, as start_new_kernel does
    it), run code in it, and check it runs in the kernel env (sys.prefix); both waits are bounded by
    KERNEL_TIMEOUT. Runs in the background while JupyterLab starts: `report` waits for it, prints what it
    found and raises its failure; `stop` kills the kernel it started (a failure elsewhere)."""

    def __init__(self, kernel: str, prefix: str) -> None:
        super().__init__(name="kernel-check", daemon=True)
        self.kernel, self.prefix = kernel, prefix
        self.lines: list = []
        self.failure: str | None = None
        self.manager = None
        self.stopping = False
        self.phase = (f"kernel {kernel!r} to start", time.monotonic())  # what it waits for, since when

    def run(self) -> None:
        try:
            self.check()
        except SystemExit as exc:
            self.failure = str(exc.code)
        except Exception as exc:  # any failure is the kernel check's: say what it was
            self.failure = f"smoke: FAILED: {type(exc).__name__}: {exc}"

    def check(self) -> None:
        from jupyter_client.manager import KernelManager

        started = time.monotonic()
        manager = KernelManager(kernel_name=self.kernel)
        manager.start_kernel()
        self.manager = manager  # published before `stopping` is read: `stop` sees one or the other
        client = manager.client()
        output: list = []

        def collect(msg: dict) -> None:
            if msg["header"]["msg_type"] == "stream":
                output.append(msg["content"].get("text", ""))
            elif msg["header"]["msg_type"] == "error":
                output.append(f"{msg['content'].get('ename')}: {msg['content'].get('evalue')}")

        try:
            if self.stopping:
                return
            client.start_channels()
            try:
                client.wait_for_ready(timeout=KERNEL_TIMEOUT)
            except RuntimeError as exc:
                raise timed_out(f"kernel {self.kernel!r} to start", KERNEL_TIMEOUT, str(exc)) from None
            self.lines.append(f"smoke: kernel answers after {time.monotonic() - started:.0f} s")
            self.phase = ("the kernel to run the test code", time.monotonic())
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
        if printed != self.prefix:
            raise SystemExit(f"smoke: FAILED: the kernel runs in {printed!r}, not {self.prefix!r}")
        self.lines.append(f"smoke: kernel runs code (sys.prefix {printed})")

    def report(self) -> None:
        """Wait for the check (its own waits are bounded; this one too, a little later), with progress."""
        note = time.monotonic() + PROGRESS_EVERY
        while self.is_alive():
            self.join(POLL)
            waiting_for, since = self.phase
            now = time.monotonic()
            if now - since >= KERNEL_TIMEOUT + 30:
                raise timed_out(waiting_for, KERNEL_TIMEOUT)
            if now >= note:
                progress(waiting_for, since, KERNEL_TIMEOUT)
                note += PROGRESS_EVERY
        print("\n".join(self.lines), flush=True)
        if self.failure:
            raise SystemExit(self.failure)

    def stop(self) -> None:
        self.stopping = True
        process = getattr(getattr(self.manager, "provisioner", None), "process", None)
        if process is not None and self.is_alive():
            process.kill()  # the check's wait then ends (the kernel died) and it shuts the manager down
        if self.ident is not None:
            self.join(10)


def stopped(signum: int, frame: object) -> None:
    raise SystemExit("smoke: stopped (SIGTERM)")


def main(argv: list) -> int:
    if len(argv) not in (3, 4):
        raise SystemExit("usage: if_smoke_server.py KERNEL_NAME KERNEL_PREFIX [PIDFILE]")
    kernel, prefix = argv[1], argv[2]
    signal.signal(signal.SIGTERM, stopped)
    if len(argv) == 4:
        with open(argv[3], "w", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    port, token = free_port(), secrets.token_hex(24)
    runtime = tempfile.mkdtemp(prefix="if-smoke-")
    os.environ["JUPYTER_RUNTIME_DIR"] = runtime  # the kernel's connection file, too
    env = dict(os.environ, JUPYTER_TOKEN=token)
    argv_lab = [jupyter, "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0"]
    log = open(os.path.join(runtime, "lab.log"), "w+b")  # noqa: SIM115 - read back on failure
    server = subprocess.Popen(argv_lab, env=env, stdout=log, stderr=subprocess.STDOUT)
    kernel_check = KernelCheck(kernel, prefix)
    try:
        kernel_check.start()
        print(f"smoke: JupyterLab and kernel {kernel!r} starting (waiting at most {START_TIMEOUT:.0f} s and "
              f"{KERNEL_TIMEOUT:.0f} s)", flush=True)
        check_listing(jupyter, kernel)
        check_server(f"http://127.0.0.1:{port}", token, kernel, server)
        server.terminate()  # done with it: it stops (~0.5 s) while the kernel check ends
        kernel_check.report()
    except (SystemExit, Exception) as exc:  # any failure: what failed, the server log's tail, what failed
        why = str(exc.code) if isinstance(exc, SystemExit) else f"smoke: FAILED: {type(exc).__name__}: {exc}"
        print(why)
        print("smoke: the JupyterLab log's last lines:")
        log.seek(0)
        sys.stdout.write(log.read().decode(errors="replace")[-4000:].replace(token, "<token>"))
        print(f"\n{why}", flush=True)
        raise SystemExit(NOT_LISTED if isinstance(exc, NotListed) else 1) from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up runs to its end
        kernel_check.stop()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        shutil.rmtree(runtime, ignore_errors=True)
        if len(argv) == 4:
            open(argv[3], "w").close()  # noqa: SIM115 - no pid to stop any more
    print("smoke: JupyterLab stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
