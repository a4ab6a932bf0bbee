"""The operator tools' client of a running service: `reactor status` and `reactor requeue`.

Which service, and with which token (`find_service`): ``--url``, else REACTOR_URL, else
the ``listen`` address of this host's serve settings (``--config``, REACTOR_CONFIG,
REACTOR_LISTEN), reached on loopback, with serve's token from the same places
(`reactor.settings.serve.local_service`). With a URL (``--url`` or REACTOR_URL) the
settings file is not read at all: the token is ``--token`` or REACTOR_TOKEN only
(`reactor.settings.serve.client_token`), so a token from this host's settings is never
sent to another host, and a broken settings file does not stand in the way.

Asking (`ServiceClient.request`): GET or POST with the bearer header and a timeout; the
answer's JSON, or a `ServiceError` whose message is one line for a person saying what
went wrong and what to do (the service cannot be reached; it wants a token, or refused
the one sent; it refused this host; any other status with the service's own detail,
read by `reactor.core.protocol.error_detail`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reactor.core.protocol import error_detail
from reactor.ops.status_view import Glyphs
from reactor.settings.parsing import ConfigError
from reactor.settings.serve import client_token, local_service

DEFAULT_TIMEOUT_S = 10.0


class ServiceError(Exception):
    """The service could not be used; the message is one line for a person."""

    def __init__(self, message: str, *, lasting: bool) -> None:
        super().__init__(message)
        self.lasting = lasting  # retrying will not help (a refused token, not a reactor)


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """``--url``, ``--token`` and ``--config``: where the service is, and its token."""
    parser.add_argument(
        "--url", default=None,
        help="the running service, such as http://seqhost:40765 (REACTOR_URL; default: "
        "the listen address of this host's settings, on loopback)",
    )  # fmt: skip
    parser.add_argument(
        "--token", default=None,
        help="the service's token (prefer REACTOR_TOKEN: ps shows flags to other users)",
    )  # fmt: skip
    parser.add_argument(
        "--config", metavar="FILE", default=None,
        help="serve's TOML settings file, for its listen address and token (REACTOR_CONFIG); "
        "not read when --url or REACTOR_URL is given",
    )  # fmt: skip


def find_service(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str | None]:
    """(URL, token) of the service, by the rules above; a ConfigError names a bad setting."""
    given_url = args.url or env.get("REACTOR_URL")
    if given_url:
        url, token = str(given_url).rstrip("/"), client_token(args, env)
    else:
        url, token = local_service(args, env)
    if not url.startswith(("http://", "https://")):
        msg = f"--url must start with http:// or https://, as in http://seqhost:40765 (got {url!r})"
        raise ConfigError(msg)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or parts.query or parts.fragment:
        msg = f"--url {url!r} is not a service's address: give one such as http://seqhost:40765"
        raise ConfigError(msg)
    return url, token


@dataclass(frozen=True, slots=True)
class ServiceClient:
    """One service at `url`; `prog` (such as "reactor status") starts every message."""

    url: str
    token: str | None = field(repr=False)
    prog: str

    @classmethod
    def from_arguments(
        cls, args: argparse.Namespace, prog: str, env: Mapping[str, str] | None = None
    ) -> ServiceClient:
        """The service `add_service_arguments` let a person name; ConfigError if badly."""
        url, token = find_service(args, os.environ if env is None else env)
        return cls(url, token, prog)

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        query: Sequence[tuple[str, str]] = (),
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> object:
        """`method` `url``path`?`query`; the answer's JSON. Any failure, an answer that is
        not JSON included, is a ServiceError saying what to do."""
        target = f"{self.url}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
        request = urllib.request.Request(target, method=method)  # noqa: S310 - http(s) checked
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310
                body = reply.read()
        except urllib.error.HTTPError as exc:
            raise self._refused(exc.code, _body(exc), str(exc.reason)) from None
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except (OSError, http.client.HTTPException) as exc:  # e.g. cut off mid-answer
            raise self._unreachable(exc) from None
        try:
            answer: object = json.loads(body)
        except ValueError:  # not JSON, nor even UTF-8 text
            raise self.not_a_reactor() from None
        return answer

    def not_a_reactor(self) -> ServiceError:
        """For an answer that is not what a reactor sends."""
        msg = f"{self.prog}: {self.url} did not answer like a reactor: is --url right?"
        return ServiceError(msg, lasting=True)

    def _unreachable(self, reason: object) -> ServiceError:
        if isinstance(reason, OSError) and reason.strerror:
            text = reason.strerror
        else:
            text = str(reason) or type(reason).__name__
        text = text[:1].lower() + text[1:]
        dash = Glyphs.for_encoding(sys.stderr.encoding).none
        msg = (
            f"{self.prog}: cannot reach {self.url}: {text} {dash} is `reactor serve` running? "
            "(give its address with --url)"
        )
        return ServiceError(msg, lasting=False)

    def _refused(self, status: int, body: str, reason: str) -> ServiceError:
        if status == 401 and self.token is None:
            msg = (
                f"{self.prog}: {self.url} needs a token: set REACTOR_TOKEN or --token (without "
                "--url, serve's settings file, given with --config, is read for it too)"
            )
        elif status == 401:
            msg = f"{self.prog}: {self.url} refused the token: check REACTOR_TOKEN or --token"
        elif status == 403:
            msg = (
                f"{self.prog}: {self.url} refused this host (not in its allow list): run it on "
                "the service's host or an allowed one"
            )
        else:
            detail = error_detail(body) or reason or "no detail given"
            msg = f"{self.prog}: {self.url} answered {status}: {detail}"
        return ServiceError(msg, lasting=status in (401, 403, 404))


def _body(exc: urllib.error.HTTPError) -> str:
    try:
        return exc.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException):
        return ""
