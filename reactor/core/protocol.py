"""What the service's error answers say, read the same way by every client.

The service answers every failure with a JSON object ``{"error": ..., "detail": ...}``
and a 4xx or 5xx status (`reactor.serve.api`). `error_detail` takes the body of such an
answer, or of whatever stood in the service's place (a proxy's HTML page, plain text),
and returns one line for a person. `MAX_WAIT_S` bounds the long-poll for both sides.
Pure: no I/O.
"""

from __future__ import annotations

import json

DETAIL_LIMIT = 200  # characters: a detail is shown on one line, never a whole page
# The longest an engine may ask `/assignwork` to hold its request (`wait_s`, long-poll):
# the service refuses more, and the reference engine never asks for more.
MAX_WAIT_S = 60.0


def error_detail(body: str, limit: int = DETAIL_LIMIT) -> str:
    """The detail of an error answer's body, as one line of at most `limit` characters.

    A JSON object gives its ``detail`` (else its ``error``, else the object as sent);
    any other body gives its own start. Runs of whitespace, newlines included, become
    one space. An empty body gives ``""``, so the caller can say something else.
    """
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict):
        found = answer.get("detail") or answer.get("error")
        text = str(found) if found else body
    else:
        text = body
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
