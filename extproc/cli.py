"""`lunaroute`: up (Envoy + workers), serve (workers only), render-envoy, check, sessions."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import secrets
import signal
import sys
import tempfile
from pathlib import Path

import yaml

from . import config as config_mod
from .config import Config, ConfigError, is_loopback
from .envoy_config import GATE_FILE, inline_gate, render, render_gate, render_yaml, write_gate
from .envoy_config.bootstrap import inline_spent
from .envoy_config.pools import POOLS_FILE, pooled, write_pools, write_secret_sources
from .envoy_config.spent import SPENT_FILE, write_spent
from .observe import sessions_cli
from .pools import cli as pools_cli
from .supervisor import Supervisor, SupervisorError, find_envoy, validate_bootstrap


def _with_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    listen = {k: v for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)))
              if v is not None}
    update: dict = {}
    if listen:
        update["listen"] = cfg.listen.model_copy(update=listen)
    extproc = _extproc_overrides(cfg, args)
    if extproc:
        update["extproc"] = cfg.extproc.model_copy(update=extproc)
    return cfg.model_copy(update=update) if update else cfg


def _extproc_overrides(cfg: Config, args: argparse.Namespace) -> dict:
    """`serve`'s --workers, --socket-dir and --tls-* over the config's `extproc` (the files are named,
    never read, here: a worker reads them when it starts)."""
    out: dict = {}
    if getattr(args, "workers", None) is not None:
        out["workers"] = args.workers
    if getattr(args, "socket_dir", None):
        out["socket_dir"] = args.socket_dir
    tls = {field: getattr(args, f"tls_{field}", None) for field in ("cert_file", "key_file", "client_ca_file")}
    if any(tls.values()):
        if not all(tls.values()):
            raise ConfigError("serve: --tls-cert, --tls-key and --tls-client-ca go together (mutual TLS needs the "
                              "worker's certificate, its key and the CA that signs Envoy's client certificate)")
        out["tls"] = config_mod.ExtProcTLS.model_validate(tls)
    return out


def _load(args: argparse.Namespace, secrets: bool) -> Config:
    cfg = _with_overrides(config_mod.load(args.config), args)
    if secrets:
        cfg.check_secrets()
    return cfg


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _supervise(sup: Supervisor, banner: list[str]) -> int:
    """Start, wait until ready, print the banner, run until a signal or a death. A signal during
    start-up stops whatever already started."""

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        sup.start()
        sup.wait_ready()
    except SupervisorError as exc:
        sup.stop()
        print(f"lunaroute: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        sup.stop()
        return 130
    print("\n".join(banner), flush=True)
    return sup.run_forever()


def _exposure(cfg: Config) -> str:
    """One line saying who can use the gateway."""
    keys = cfg.access.keys
    if keys:
        names = ", ".join(k.name for k in keys)
        return f"Gateway keys required ({len(keys)}: {names}); SIGHUP or a changed key_file reloads them."
    if is_loopback(cfg.listen.host):
        return "No gateway keys: anyone on this machine can use it (README: Security)."
    return (f"No gateway keys and listening on {cfg.listen.host} (access.allow_anonymous): anyone who can "
            "reach it can use it.")


def cmd_up(args: argparse.Namespace) -> int:
    cfg = _load(args, secrets=True)
    sup = Supervisor(cfg, envoy_bin=find_envoy(), reload=lambda: _load(args, secrets=False))
    lines = [f"LunaRoute is listening on {sup.url}  (default provider: {cfg.default_provider})", _exposure(cfg),
             "Point Claude Code at it:", f"  export ANTHROPIC_BASE_URL={sup.url}"]
    if sup.console_url:
        lines.insert(1, f"Console: {sup.console_url}")
    if cfg.access.keys:
        lines.append('  export ANTHROPIC_CUSTOM_HEADERS="x-lunaroute-key: <your gateway key>"  '
                     "# or ANTHROPIC_API_KEY=<your gateway key>")
    return _supervise(sup, [*lines, "Ctrl-C stops it."])


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args, secrets=False)
    ep = cfg.extproc
    where = []
    if ep.tls is not None or not ep.socket_dir:
        tcp = f"{ep.listen_host}:{ep.port}..{ep.port + ep.workers - 1}"
        where.append(f"{tcp} (mutual TLS)" if ep.tls is not None else f"{tcp} (plain TCP: no stream is trusted)")
    if ep.socket_dir:
        where.append(f"{ep.socket_dir}/worker-*.sock")
    return _supervise(Supervisor(cfg, with_envoy=False), ["ext_proc listening on " + " and ".join(where)])


def cmd_worker(args: argparse.Namespace) -> int:
    cfg = Config.model_validate_json(Path(args.config_json).read_text(encoding="utf-8"))
    _logging(cfg.log_level)
    from .server import serve

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(cfg, args.port, restarted=args.restarted))
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """The bootstrap, and the gate file beside it (Envoy watches that one; rotating keys rewrites it), the
    spent-limits file with nothing spent (the workers rewrite it: give them its path in
    LUNAROUTE_SPENT_FILE), and with credential pools the pool file in `pools.state_dir` (shared with the
    workers). On stdout: one self-contained file with the gate inlined."""
    cfg = _load(args, secrets=False)
    digests = cfg.key_digests()
    if args.output in (None, "-"):
        boot = inline_spent(inline_gate(render(cfg, ca_file=args.ca_file), render_gate(cfg, digests)))
        sys.stdout.write(yaml.safe_dump(boot, sort_keys=False, width=120))
        return 0
    out = Path(args.output)
    gate = out.with_name(GATE_FILE)
    write_gate(cfg, gate, digests)
    write_spent(gate.with_name(SPENT_FILE), [])
    if cfg.pools.state_dir is not None and pooled(cfg):  # credential pools: nothing cooling yet
        Path(cfg.pools.state_dir).mkdir(parents=True, exist_ok=True)
        write_pools(cfg, Path(cfg.pools.state_dir) / POOLS_FILE)
        write_secret_sources(cfg)
    out.write_text(render_yaml(cfg, ca_file=args.ca_file, gate_path=args.gate_path or str(gate.resolve())),
                   encoding="utf-8")
    return 0


def cmd_keys_new(args: argparse.Namespace) -> int:
    """A new random gateway key (or, `--admin`, console admin key), and the config entry that admits
    it (only its digest)."""
    key = "lr-" + secrets.token_urlsafe(32)
    digest = hashlib.sha256(key.encode()).hexdigest()
    print(f"key (give it to {args.name}; it is shown only now): {key}")
    print("config entry:")
    if args.admin:
        print(f"  console:\n    admin_keys:\n      - {{name: {args.name}, key_sha256: {digest}}}")
    else:
        print(f"  access:\n    keys:\n      - {{name: {args.name}, key_sha256: {digest}}}")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    """The web console (extproc/console) in the foreground, on `console.host:port` or the flags'."""
    import uvicorn

    from .console.app import create_app

    if args.config_json:  # started by `lunaroute up`, with the runtime config (Envoy's admin socket)
        cfg = Config.model_validate_json(Path(args.config_json).read_text(encoding="utf-8"))
    else:
        cfg = config_mod.load(args.config)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    cfg = cfg.model_copy(update={"console": cfg.console.model_copy(update=overrides)}) if overrides else cfg
    cfg.console.check_exposure()
    app = create_app(cfg, admin_address_file=args.admin_address_file)
    _logging(cfg.log_level)
    print(f"LunaRoute console on http://{cfg.console.host}:{cfg.console.port}", flush=True)
    uvicorn.run(app, host=cfg.console.host.strip("[]"), port=cfg.console.port, log_level="warning",
                server_header=False, proxy_headers=False)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args, secrets=True)
    print(f"config OK: {len(cfg.providers)} provider(s), default {cfg.default_provider!r}")
    for warning in config_mod.warnings(cfg):
        print(f"warning: {warning}")
    print(_exposure(cfg))
    envoy = find_envoy()
    if not envoy:
        print("envoy binary not found; skipped `envoy --mode validate`")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "envoy.yaml"
        path.write_text(render_yaml(cfg), encoding="utf-8")
        ok, last = validate_bootstrap(envoy, path, render_gate(cfg))
    if not ok:
        print(f"lunaroute: the rendered Envoy bootstrap is invalid: {last}", file=sys.stderr)
        return 1
    print("envoy bootstrap OK (envoy --mode validate)")
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    """Read the session store of the config given (its `recording.dir`)."""
    directory = config_mod.load(args.config).recording.dir
    try:
        return args.sessions_func(args, directory)
    except FileNotFoundError as exc:
        print(f"lunaroute: {exc}", file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lunaroute", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", "-c", help="YAML config file (default: $LUNAROUTE_CONFIG, else built-in)")
        return sp

    up = with_config(sub.add_parser("up", help="run Envoy and the ext_proc workers in the foreground"))
    up.add_argument("--host", help="listen address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="listen port (default 8080)")
    up.add_argument("--workers", type=int, help="ext_proc worker processes (default 2)")
    up.set_defaults(func=cmd_up)

    serve = with_config(sub.add_parser("serve", help="run only the ext_proc workers (sidecar entry point)"))
    serve.add_argument("--workers", type=int, help="ext_proc worker processes (default 2)")
    serve.add_argument("--socket-dir", help="listen on Unix sockets <dir>/worker-<i>.sock (Envoy in the same pod)")
    serve.add_argument("--tls-cert", dest="tls_cert_file", help="PEM certificate: listen on TCP with mutual TLS")
    serve.add_argument("--tls-key", dest="tls_key_file", help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", dest="tls_client_ca_file",
                       help="PEM CA that signed Envoy's client certificate (others are refused)")
    serve.set_defaults(func=cmd_serve)

    render = with_config(sub.add_parser("render-envoy", help="write the Envoy bootstrap for a config"))
    render.add_argument("--output", "-o", help="file to write (default: stdout)")
    render.add_argument("--ca-file", help="CA bundle path inside the Envoy container")
    render.add_argument("--gate-path", help=f"where Envoy reads {GATE_FILE} (default: beside --output)")
    render.add_argument("--host", help="listen address")
    render.add_argument("--port", type=int, help="listen port")
    render.set_defaults(func=cmd_render)

    check = with_config(sub.add_parser("check", help="validate a config (and its Envoy bootstrap)"))
    check.set_defaults(func=cmd_check)

    keys = sub.add_parser("keys", help="gateway keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    new = keys_sub.add_parser("new", help="print a new random gateway key and its config entry")
    new.add_argument("--name", default="alice", help="the key's name (shows up in logs and metrics)")
    new.add_argument("--admin", action="store_true", help="a console admin key (console.admin_keys)")
    new.set_defaults(func=cmd_keys_new)

    console = with_config(sub.add_parser("console", help="the web console: sessions, spend, keys, routing"))
    console.add_argument("--host", help="listen address (default console.host, 127.0.0.1)")
    console.add_argument("--port", type=int, help="listen port (default console.port, 8081)")
    console.add_argument("--config-json", help=argparse.SUPPRESS)
    console.add_argument("--admin-address-file", help=argparse.SUPPRESS)
    console.add_argument("--restarted", action="store_true", help=argparse.SUPPRESS)
    console.set_defaults(func=cmd_console)

    sessions_cli.add_parser(sub, with_config).set_defaults(func=cmd_sessions)
    pools_cli.add_parser(sub, with_config).set_defaults(func=lambda a: pools_cli.cmd_pools(a, config_mod.load))

    worker = sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--config-json", required=True)
    worker.add_argument("--port", type=int, required=True)
    worker.add_argument("--restarted", action="store_true", help="the supervisor restarted a dead worker")
    worker.set_defaults(func=cmd_worker)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"lunaroute: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
