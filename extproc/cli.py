"""`lunaroute`: up (Envoy + workers), serve (workers only), render-envoy, check."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tempfile
from pathlib import Path

from . import config as config_mod
from .config import Config, ConfigError
from .envoy_config import render_yaml
from .supervisor import Supervisor, SupervisorError, find_envoy, validate_bootstrap


def _with_overrides(cfg: Config, args: argparse.Namespace) -> Config:
    listen = {k: v for k, v in (("host", getattr(args, "host", None)), ("port", getattr(args, "port", None)))
              if v is not None}
    update: dict = {}
    if listen:
        update["listen"] = cfg.listen.model_copy(update=listen)
    workers = getattr(args, "workers", None)
    if workers is not None:
        update["extproc"] = cfg.extproc.model_copy(update={"workers": workers})
    return cfg.model_copy(update=update) if update else cfg


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


def cmd_up(args: argparse.Namespace) -> int:
    cfg = _load(args, secrets=True)
    sup = Supervisor(cfg, envoy_bin=find_envoy())
    return _supervise(sup, [
        f"LunaRoute is listening on {sup.url}  (default provider: {cfg.default_provider})",
        "Point Claude Code at it:",
        f"  export ANTHROPIC_BASE_URL={sup.url}",
        "Ctrl-C stops it.",
    ])


def cmd_serve(args: argparse.Namespace) -> int:
    cfg = _load(args, secrets=False)
    ep = cfg.extproc
    return _supervise(Supervisor(cfg, with_envoy=False),
                      [f"ext_proc listening on {ep.listen_host}:{ep.port}..{ep.port + ep.workers - 1}"])


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
    cfg = _load(args, secrets=False)
    text = render_yaml(cfg, ca_file=args.ca_file)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    cfg = _load(args, secrets=True)
    print(f"config OK: {len(cfg.providers)} provider(s), default {cfg.default_provider!r}")
    envoy = find_envoy()
    if not envoy:
        print("envoy binary not found; skipped `envoy --mode validate`")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "envoy.yaml"
        path.write_text(render_yaml(cfg), encoding="utf-8")
        ok, last = validate_bootstrap(envoy, path)
    if not ok:
        print(f"lunaroute: the rendered Envoy bootstrap is invalid: {last}", file=sys.stderr)
        return 1
    print("envoy bootstrap OK (envoy --mode validate)")
    return 0


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
    serve.set_defaults(func=cmd_serve)

    render = with_config(sub.add_parser("render-envoy", help="write the Envoy bootstrap for a config"))
    render.add_argument("--output", "-o", help="file to write (default: stdout)")
    render.add_argument("--ca-file", help="CA bundle path inside the Envoy container")
    render.add_argument("--host", help="listen address")
    render.add_argument("--port", type=int, help="listen port")
    render.set_defaults(func=cmd_render)

    check = with_config(sub.add_parser("check", help="validate a config (and its Envoy bootstrap)"))
    check.set_defaults(func=cmd_check)

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
