"""`reactor check`'s check of who can reach the API: loopback, a token, an allow list."""

from __future__ import annotations

from reactor.ops.checks.result import CheckResult, Status
from reactor.settings.network import is_loopback
from reactor.settings.serve import ServeConfig

SHORT_TOKEN = 32  # characters: a shorter token can be guessed


def check_access(config: ServeConfig) -> CheckResult:
    """Who can reach the API: loopback only, a token, an allow list, or anyone."""
    name = "access"
    if is_loopback(config.host):
        return CheckResult(
            name, Status.OK, f"{config.listen} is loopback: engines on this host only"
        )
    rules = []
    if config.token is not None:
        rules.append("a token")
    if config.allow:
        rules.append(f"an allow list ({', '.join(str(net) for net in config.allow)})")
    if config.token is not None and len(config.token) < SHORT_TOKEN:
        return CheckResult(
            name,
            Status.WARN,
            f"{config.listen} is reachable from other hosts and the token is short "
            f"({len(config.token)} characters)",
            "use a long random token: openssl rand -hex 32",
        )
    if not rules:
        return CheckResult(
            name,
            Status.WARN,
            f"{config.listen} is reachable from other hosts with neither token nor allow "
            "list (insecure): anyone who reaches the port can take and report work",
            "set REACTOR_TOKEN (openssl rand -hex 32) and allow = the engines' networks",
        )
    if config.token is None:
        return CheckResult(
            name,
            Status.OK,
            f"{config.listen} is reachable from other hosts; {rules[0]} limits the clients "
            "(a token as well is recommended)",
        )
    return CheckResult(
        name, Status.OK, f"{config.listen} is reachable from other hosts; {' and '.join(rules)}"
    )
