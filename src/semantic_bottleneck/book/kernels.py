"""Warm kernels: each page's kernel is forked from one process that has already imported the
kernel, torch and the package, so that a page starts in a fraction of a second instead of the five
seconds a fresh interpreter spends importing them (30 pages a build).

A fork shares nothing with its siblings: each page still runs in its own process, with its own
namespace, random state and figures, exactly as a fresh kernel that had imported the same modules.
Two things keep the fork safe and faithful:
- the server process stays one thread and never computes (a process with threads, or with an
  OpenMP pool started, is unsafe to fork);
- it imports nothing that needs a live kernel: matplotlib's inline backend registers itself with
  the kernel that first draws a figure, so only the backend's name is set (`MPLBACKEND`) here.

`warm_kernels()` (used by `runner.run_all`) starts the server (`python -m
semantic_bottleneck.book.kernels serve SOCKET`) and points a temporary `python3` kernelspec at
the launcher (`python -m semantic_bottleneck.book.kernels -f CONNECTION_FILE`). jupyter_client
starts the launcher as it would start a kernel; the launcher hands the server its connection file,
environment, working directory and standard streams, relays the signals it gets (interrupts,
termination) to the forked kernel and exits with the kernel's status. Without a server (the
environment variable unset, or the server gone) the launcher execs an ordinary kernel.

Only the standard library is imported at module level: the launcher must start fast.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

SERVER_ENV = "SEMANTIC_BOTTLENECK_KERNEL_SERVER"  # the server's socket, for the launcher
INLINE = "module://matplotlib_inline.backend_inline"  # what ipykernel sets for a fresh kernel
# what the server imports before forking: the kernel, the pages' helpers and every section module
PRELOAD = (
    "ipykernel.kernelapp",
    "semantic_bottleneck.book.pages",
    "semantic_bottleneck.book.params",
)
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
# where a forked interpreter is a faithful copy: Linux (macOS aborts a child that touches some
# system frameworks its parent loaded, which torch and matplotlib may)
FORKS = sys.platform.startswith("linux")


# ----------------------------------------------------------------------------- the launcher


def launch(kernel_args: list[str]) -> None:
    """Start a kernel with `kernel_args` (ipykernel's, e.g. ["-f", connection_file]): forked by
    the server when one is running, else an ordinary `python -m ipykernel_launcher`. Does not
    return: the process exits with the kernel's status."""
    path = os.environ.get(SERVER_ENV)
    conn = None
    if path:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
        except OSError:
            conn.close()
            conn = None
    if conn is None:
        os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *kernel_args])
    request = {"args": kernel_args, "env": dict(os.environ), "cwd": os.getcwd()}
    socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
    reply = _read_line(conn)
    if reply is None:  # the server went away before forking
        os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *kernel_args])
    pid = json.loads(reply)["pid"]
    for signum in RELAYED:
        signal.signal(signum, lambda s, _frame: _signal(pid, s))
    status = _read_line(conn)
    code = json.loads(status)["status"] if status else 1
    if code < 0:  # killed by a signal: die of the same one, as the kernel did
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    sys.exit(code)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _read_line(conn: socket.socket) -> bytes | None:
    """One newline-terminated message, or None when the peer closes first."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = conn.recv(65536)
        except InterruptedError:
            continue
        if not chunk:
            return None
        data += chunk
    return data


# ----------------------------------------------------------------------------- the server


def serve(path: str) -> None:
    """Import `PRELOAD` (every section module included), then fork a kernel for each launcher
    that connects to the Unix socket at `path`, until SIGTERM. Prints "ready" once listening."""
    os.environ["MPLBACKEND"] = INLINE  # read once, when matplotlib is imported
    for name in PRELOAD:
        importlib.import_module(name)
    _import_sections()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the pipe
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    kernels: dict[int, socket.socket] = {}  # pid -> its launcher's connection
    orphans: set[int] = set()  # kernels killed because their launcher died, not yet reaped
    print("ready", flush=True)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nobody reads the pipe after this line
    try:
        while not stopping:
            watched = [c for p, c in kernels.items() if p not in orphans]
            readable, _, _ = select.select([listener, wake_r, *watched], [], [])
            if wake_r in readable:
                os.read(wake_r, 4096)
                _reap(kernels)
                orphans &= set(kernels)
            for conn in [c for c in readable if c not in (listener, wake_r)]:
                pid = next((p for p, c in kernels.items() if c is conn), None)
                if pid is not None and not conn.recv(1):  # the launcher was killed: its kernel too
                    _signal_group(pid, signal.SIGKILL)
                    orphans.add(pid)
            if listener in readable:
                conn, _ = listener.accept()
                pid = _fork_kernel(conn, listener, wake_r, wake_w, kernels)
                if pid is not None:
                    kernels[pid] = conn
    finally:  # no kernel outlives the server; each launcher learns how its kernel ended
        for pid in kernels:
            _signal_group(pid, signal.SIGKILL)
        for pid in list(kernels):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)  # killed: reaped at once
            _report(kernels.pop(pid), -signal.SIGKILL)
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _import_sections() -> None:
    """Every module of `semantic_bottleneck.sections`: what the pages import."""
    import pkgutil

    import semantic_bottleneck.sections as sections

    for info in pkgutil.iter_modules(sections.__path__):
        importlib.import_module(f"{sections.__name__}.{info.name}")


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _reap(kernels: dict[int, socket.socket]) -> None:
    """Collect every exited kernel and send its status to its launcher."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = kernels.pop(pid, None)
        if conn is not None:
            _report(conn, os.waitstatus_to_exitcode(status))


def _report(conn: socket.socket, code: int) -> None:
    """Send a launcher its kernel's exit status (negative: the signal that ended it)."""
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps({"status": code}).encode() + b"\n")
    conn.close()


def _fork_kernel(conn, listener, wake_r: int, wake_w: int, kernels: dict) -> int | None:
    """Read a launcher's request and fork its kernel; the pid, or None for a bad request."""
    try:
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while not message.endswith(b"\n"):
            chunk = conn.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the launcher closed mid-request")
            message += chunk
        request = json.loads(message)
        if len(fds) != 3:
            raise ConnectionError(f"expected the launcher's 3 standard streams, got {len(fds)}")
    except (OSError, ValueError):
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        with contextlib.suppress(OSError):  # a launcher gone already is seen by the loop
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        return pid
    # the kernel: a session of its own, the launcher's streams, environment and directory
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        for sock in (listener, conn, *kernels.values()):
            sock.close()
        for fd in (wake_r, wake_w):
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.path[0] = request["cwd"]  # as `python -m` puts the working directory first
        code = _run_kernel(request["args"])
    finally:
        os._exit(code)


def _run_kernel(args: list[str]) -> int:
    """ipykernel's `python -m ipykernel_launcher ARGS`, in this process; its exit status."""
    import atexit
    import runpy

    # the kernel app reads its parent's pid from the environment when ipykernel is imported,
    # here before there was one: pass it as a fresh kernel has it (it exits when orphaned)
    parent = os.environ.get("JPY_PARENT_PID")
    sys.argv = ["ipykernel_launcher", *args]
    if parent:
        sys.argv.append(f"--IPKernelApp.parent_handle={int(parent)}")
    code = 0
    try:
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code


# ----------------------------------------------------------------------------- the runner's side


@contextlib.contextmanager
def warm_kernels() -> Iterator[None]:
    """Within the block, `python3` kernels are forked from a warm server (module docstring).

    The server is started with the environment as it is on entry (say OMP_NUM_THREADS set for
    the kernels), which every kernel then has; kernels started after the block are ordinary.
    """
    with tempfile.TemporaryDirectory(prefix="semantic-bottleneck-kernels-") as tmp:
        path = str(Path(tmp) / "server.sock")
        server = subprocess.Popen(
            [sys.executable, "-m", "semantic_bottleneck.book.kernels", "serve", path],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the kernel server did not start (exit {server.wait()})")
            spec = Path(tmp) / "kernels" / "python3"
            spec.mkdir(parents=True)
            argv = [sys.executable, "-m", "semantic_bottleneck.book.kernels", "-f"]
            kernel = {"argv": [*argv, "{connection_file}"], "display_name": "Python 3 (warm)",
                      "language": "python", "metadata": {"debugger": True}}  # fmt: skip
            (spec / "kernel.json").write_text(json.dumps(kernel))
            paths = os.pathsep.join(p for p in [tmp, os.environ.get("JUPYTER_PATH")] if p)
            with environment(JUPYTER_PATH=paths, **{SERVER_ENV: path}):
                yield
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            server.stdout.close()


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set environment variables (None: unset them) for the block, then restore them: what
    the kernels started in the block inherit."""
    saved = {key: os.environ.get(key) for key in values}
    _set_environment(values)
    try:
        yield
    finally:
        _set_environment(saved)


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve(argv[1])
    else:
        launch(argv)


if __name__ == "__main__":
    main()
