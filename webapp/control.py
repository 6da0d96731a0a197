"""Handing `sslmanager cert process` to the running service, the way `cmctl renew` asks
cert-manager's controller: when `sslmanager run` or `sslmanager worker` serves this instance, the
command sends the job over the service's Unix socket and prints what comes back, so a deploy
hook pays no interpreter start-up of Flask, SQLAlchemy and the ACME stack, reuses the service's
connections, and its orders share the service's claims. Without a service (or with --here) the
command does the work itself, as before.

This module is the client and the wire format, and imports nothing but the standard library and
webapp.config: it runs before the rest of the app is loaded. The server is
webapp.services.control_server.

Wire format: one JSON object per line. The client sends
  {"version": 1, "command": "cert-process", "ids": [..], "wait": s, "concurrency": n|null,
   "database": sha256 of the database URL the command would use}
and the service answers either {"refused": why} (the command then works in-process) or
any number of {"out": line} / {"err": line}, then {"exit": code}.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from typing import Any

from . import config

VERSION = 1
CONNECT_TIMEOUT = 2.0
ANSWER_MARGIN = 60.0  # seconds past --wait + SSLMANAGER_ISSUANCE_TIMEOUT before giving up


def fingerprint(database_url: str) -> str:
    """What the two sides compare to be sure they mean the same database (the URL may carry a
    password, so only its hash crosses the socket)."""
    return hashlib.sha256(database_url.encode()).hexdigest()


def parse_process_args(argv: list[str]) -> dict[str, Any] | None:
    """`cert process ID... [--wait S] [--concurrency N]` as a request, or None for anything
    else (other commands, --help, --here, a bad value): the full command line handles those,
    with its usual messages."""
    if argv[:2] != ["cert", "process"]:
        return None
    ids: list[int] = []
    options: dict[str, Any] = {"wait": 0.0, "concurrency": None}
    args = list(argv[2:])
    try:
        while args:
            arg = args.pop(0)
            name, eq, value = arg.partition("=")
            if name in ("--wait", "--concurrency"):
                if not eq:
                    value = args.pop(0)
                if name == "--wait":
                    options["wait"] = float(value)
                else:
                    options["concurrency"] = int(value)
                    if not 1 <= options["concurrency"] <= 64:
                        return None
            elif arg.isdigit():
                ids.append(int(arg))
            else:
                return None
    except (IndexError, ValueError):
        return None
    if not ids:
        return None
    return {"version": VERSION, "command": "cert-process", "ids": ids, **options}


def hand_off(argv: list[str]) -> int | None:
    """Run the command in the service when one serves this instance; its exit code, or None
    when the command should do the work itself (not this command, no service, a different
    database, an older service)."""
    request = parse_process_args(argv)
    if request is None:
        return None
    instance_path = config.instance_path_from_env() or os.path.abspath("instance")
    try:
        settings = config.read(instance_path)
        patience = request["wait"] + float(settings["SSLMANAGER_ISSUANCE_TIMEOUT"]) + ANSWER_MARGIN
    except Exception:  # a broken instance/config.py: the full command says what is wrong
        return None
    path = config.control_socket(settings, instance_path)
    if not path or not os.path.exists(path):
        return None
    request["database"] = fingerprint(config.database_url(settings, instance_path))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(CONNECT_TIMEOUT)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        # The service answers within --wait plus one issuance; past that it is stuck.
        sock.settimeout(patience)
        with sock.makefile("r", encoding="utf-8") as answers:
            return _print_answers(answers, patience)
    except OSError:
        return None  # a stale socket, a service going down: do it here
    except KeyboardInterrupt:
        print("Stopped waiting; the service goes on with the order "
              "(see `sslmanager cert show ID`).", file=sys.stderr)
        return 130
    finally:
        sock.close()


def _print_answers(answers, patience: float) -> int | None:
    started = False
    try:
        for line in answers:
            message = json.loads(line)
            if "refused" in message:
                return None
            started = True
            if "out" in message:
                print(message["out"], flush=True)
            elif "err" in message:
                print(message["err"], file=sys.stderr, flush=True)
            elif "exit" in message:
                return int(message["exit"])
    except TimeoutError:
        print(f"error: the service sent nothing for {patience:.0f} seconds; the order may "
              "still finish there.", file=sys.stderr)
        print("hint: see `sslmanager cert show ID`; if the service is stuck, restart it.",
              file=sys.stderr)
        return 1
    except (OSError, ValueError):
        pass
    if not started:
        return None  # closed before it took the job (shutting down): do it here
    print("error: the service closed the connection before the end; the order may still "
          "finish there.", file=sys.stderr)
    print("hint: see `sslmanager cert show ID`, or run the command again.", file=sys.stderr)
    return 1
