"""Command line: ``pubsubd run | component | check-config | user | storage ...``; wiring
only, no protocol logic."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from functools import partial
from pathlib import Path

import psycopg
import trio

from pubsubd import admin_cli
from pubsubd.cli_defaults import DEFAULT_CONFIG
from pubsubd.cli_feeds_table import feeds_table
from pubsubd.config import Config, ConfigError, load
from pubsubd.logging_setup import setup_logging
from pubsubd.ports_file import write as write_ports
from pubsubd.storage.sqlite import SchemaTooNew

__all__ = ["DEFAULT_CONFIG", "main"]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"pubsubd: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into a command that stopped reading (e.g. `| head`): not an error.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pubsubd", description="XMPP server with feed syndication")
    sub = p.add_subparsers(dest="command")

    def command(name: str, help_: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_)
        c.add_argument("--config", "-c", default=DEFAULT_CONFIG, help="YAML configuration file")
        return c

    run = command("run", "start the server")
    run.add_argument("--ports-file", type=Path, default=None,
                     help="write the bound ports here (JSON) once every listener accepts; "
                          "useful with listeners on port 0")
    run.set_defaults(func=cmd_run)

    component = command("component", "serve pubsub and feeds as an external component (XEP-0114) "
                                      "of another server (config: component_of)")
    component.add_argument("--ports-file", type=Path, default=None,
                           help="write the bound ports (metrics) here once listening")
    component.set_defaults(func=cmd_component)

    check = command("check-config", "validate a configuration file")
    check.add_argument("file", nargs="?", help="the file to check (default: --config)")
    check.set_defaults(func=cmd_check)

    user = command("user", "manage accounts")
    user_sub = user.add_subparsers(dest="action", required=True)
    for action, help_ in (("add", "create an account"), ("passwd", "change a password"),
                          ("delete", "remove an account"), ("list", "list accounts")):
        a = user_sub.add_parser(action, help=help_)
        a.add_argument("--config", "-c", default=argparse.SUPPRESS)
        if action != "list":
            a.add_argument("jid", help="user@domain")
        if action in ("add", "passwd"):
            a.add_argument("--password", help="the password (default: prompt, or stdin)")
        if action == "list":
            a.add_argument("--json", action="store_true", help="machine-readable output")
    user.set_defaults(func=cmd_user)

    storage = command("storage", "migrate, export or import the stored data")
    storage.add_argument("action", choices=["migrate", "export", "import"],
                         help="migrate: bring the schema up to date; export: write every row"
                              " (JSON lines); import: load an export into empty storage")
    storage.add_argument("file", nargs="?", help="export: the file to write (default stdout);"
                                                 " import: the file to read (default stdin)")
    storage.add_argument("--url", help="use this storage instead of the configured one"
                                       " (postgresql://... or sqlite:///...)")
    storage.set_defaults(func=cmd_storage)

    admin_cli.add_parser(command("admin", "operate the running server (users, online, stats...)"))

    feeds = command("feeds", "manage polled feeds on the running server")
    feeds.add_argument("action", choices=["list", "add", "remove", "pause", "resume", "refresh",
                                          "import", "export"])
    feeds.add_argument("target", nargs="?", help="a feed URL; an OPML file for import/export")
    feeds.add_argument("--title", default="", help="add: the feed's title")
    feeds.add_argument("--group", default="", help="add: the OPML folder it belongs to")
    feeds.add_argument("--json", action="store_true", help="machine-readable output")
    feeds.add_argument("--wide", action="store_true",
                       help="list: every field of every feed (wider than a terminal)")
    feeds.set_defaults(func=cmd_feeds)
    return p


def cmd_feeds(args: argparse.Namespace) -> int:
    """``pubsubd feeds ACTION``: the feed operations of the control socket (feeds.*)."""
    config = _load(args)
    request: dict[str, object] = {}
    if args.action == "import":
        request["opml"] = Path(args.target or "/dev/stdin").read_text(encoding="utf-8")
    elif args.action == "add":
        request = {"url": args.target, "title": args.title, "group": args.group}
    elif args.action not in ("list", "export"):
        request["url"] = args.target
    try:
        result = admin_cli.call(Path(config.control.socket), f"feeds.{args.action}", request)
    except (admin_cli.NotRunning, RuntimeError, OSError) as exc:
        print(f"pubsubd: feeds {args.action}: {exc}", file=sys.stderr)
        return 1
    if args.action == "export" and not args.json:
        if args.target:
            Path(args.target).write_text(result["opml"], encoding="utf-8")
        else:
            print(result["opml"], end="")
        return 0
    if args.json:
        print(json.dumps(result, indent=2))
    elif args.action == "list" and not args.wide:
        print(feeds_table(result))
    else:
        print(admin_cli.render(result))
    return 0


def _load(args: argparse.Namespace) -> Config:
    return load(args.config)


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args)
    setup_logging(config)
    from pubsubd.app import serve

    base = Path.cwd()  # relative paths in the config are relative to where pubsubd runs
    _print_welcome(config, args.config)
    try:
        ports_file = args.ports_file
        restart = trio.run(partial(
            serve, config, base,
            on_listening=None if ports_file is None else partial(write_ports, ports_file)))
    except (OSError, SchemaTooNew, psycopg.Error, BaseExceptionGroup) as exc:
        # A listener that cannot bind fails inside the server's nurseries: one line, not the
        # whole exception group; psycopg: PostgreSQL unreachable.
        cause = _os_error(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if cause is None:
            raise
        print(f"pubsubd: cannot start: {getattr(cause, 'strerror', None) or cause}",
              file=sys.stderr)
        return 1
    if restart:  # an admin asked for a restart: the same command, in the same process id
        import os

        os.execv(sys.executable, [sys.executable, "-m", "pubsubd", *sys.argv[1:]])
    return 0


def _os_error(exc: BaseException) -> OSError | None:
    if isinstance(exc, OSError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _os_error(inner)
            if found is not None:
                return found
    return None


def cmd_component(args: argparse.Namespace) -> int:
    """``pubsubd component``: pubsub and the feed service inside another server's domain."""
    config = _load(args)
    if config.component_of is None:
        raise ConfigError("component_of: required by `pubsubd component` (host, port, domain, "
                          "secret of the host server's component port)")
    setup_logging(config)
    from pubsubd.app import serve
    from pubsubd.composition import build_component_modules, component_mode_config

    of = config.component_of
    print(f"pubsubd is starting as component {of.domain} of the server at {of.host}:{of.port}; "
          f"users add feeds@{of.domain} as a contact.", file=sys.stderr)
    ports_file = args.ports_file
    try:
        trio.run(partial(
            serve, component_mode_config(config), Path.cwd(), modules=build_component_modules,
            on_listening=None if ports_file is None else partial(write_ports, ports_file)))
    except OSError as exc:
        print(f"pubsubd: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_storage(args: argparse.Namespace) -> int:
    """``pubsubd storage migrate|export|import``; the server should not be running for an
    import (it must find the target empty anyway)."""
    import dataclasses

    from pubsubd.storage import transfer
    config = _load(args)
    settings = config.storage
    if args.url:
        settings = dataclasses.replace(settings, url=args.url, backend="sqlite")  # url decides
    base = Path.cwd()
    try:
        if args.action == "migrate":
            resolved = transfer.prepare(settings, base)
            print(f"storage ({resolved.backend}) is at the current schema")
            return 0
        if args.action == "export":
            if args.file:
                with open(args.file, "w", encoding="utf-8") as out:
                    counts = transfer.export(settings, base, out)
            else:
                counts = transfer.export(settings, base, sys.stdout)
        else:
            if args.file:
                with open(args.file, encoding="utf-8") as lines:
                    counts = transfer.import_(settings, base, lines)
            else:
                counts = transfer.import_(settings, base, sys.stdin)
    except (transfer.TransferError, RuntimeError, OSError) as exc:
        print(f"pubsubd: storage {args.action}: {exc}", file=sys.stderr)
        return 1
    done = "exported" if args.action == "export" else "imported"
    print(f"{done} {sum(counts.values())} rows of {len(counts)} tables", file=sys.stderr)
    return 0


def _print_welcome(config: Config, config_path: str) -> None:
    """How to connect, in a few lines: where clients go, how to make an account."""
    c2s = [f"{ls.address}:{ls.port}" for ls in config.listeners if ls.kind == "c2s"]
    domain = config.primary_domain
    print(f"pubsubd is starting for {', '.join(config.domains)}; clients connect to "
          f"{', '.join(c2s) or 'no c2s listener'} (STARTTLS).", file=sys.stderr)
    print(f"Create an account:  pubsubd user add you@{domain} --config {config_path}"
          "  (after make run: .venv/bin/pubsubd)", file=sys.stderr)
    if config.pubsub.enabled and config.feeds.enabled:
        contact = f"{config.feeds.command_contact}@{config.pubsub.subdomain}.{domain}"
        print(f"Then add the contact {contact} in your client and say \"help\" to follow "
              "feeds.", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    path = args.file or args.config
    config = load(path)
    print(f"{path}: OK ({len(config.domains)} domain(s), {len(config.listeners)} listener(s))")
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    config = load(getattr(args, "config", DEFAULT_CONFIG))
    return trio.run(_user, config, args)


async def _user(config: Config, args: argparse.Namespace) -> int:
    from pubsubd.jid import JID, InvalidJID
    from pubsubd.storage.accounts import AccountExists
    from pubsubd.storage.backends import open_backend

    stores = open_backend(config.storage, Path.cwd(),
                          scram_iterations=config.auth.scram_iterations)
    store = stores.accounts
    try:
        if args.action == "list":
            accounts = await store.list()
            if args.json:
                print(json.dumps([{"jid": a.jid, "enabled": a.enabled, "last_login": a.last_login}
                                  for a in accounts]))
            else:
                for a in accounts:
                    print(a.jid + ("" if a.enabled else "  (disabled)"))
            return 0
        try:
            jid = JID.parse(args.jid)
        except InvalidJID as exc:
            print(f"pubsubd: invalid JID {args.jid!r}: {exc}", file=sys.stderr)
            return 2
        if jid.local is None or jid.domain not in config.domains:
            print(f"pubsubd: {args.jid} is not a user of a served domain "
                  f"({', '.join(config.domains)})", file=sys.stderr)
            return 2
        if args.action == "delete":
            if not await store.delete(jid.local, jid.domain):
                print(f"pubsubd: no such user {jid}", file=sys.stderr)
                return 1
            print(f"deleted {jid}")
            return 0
        password = args.password or _read_password()
        if not password:
            print("pubsubd: the password must not be empty", file=sys.stderr)
            return 2
        if args.action == "add":
            try:
                await store.create(jid.local, jid.domain, password)
            except AccountExists:
                print(f"pubsubd: {jid} already exists", file=sys.stderr)
                return 1
            print(f"created {jid}")
        else:
            if not await store.set_password(jid.local, jid.domain, password):
                print(f"pubsubd: no such user {jid}", file=sys.stderr)
                return 1
            print(f"password changed for {jid}")
        return 0
    finally:
        stores.close()


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != first:
            print("pubsubd: the passwords differ", file=sys.stderr)
            return ""
        return first
    return sys.stdin.readline().rstrip("\n")


if __name__ == "__main__":
    sys.exit(main())
