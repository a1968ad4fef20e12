"""``POST /graphql``: one operation or a batch (a JSON array), persisted or not.

Every request-level failure gets a GraphQL-style JSON body and a 4xx (never a 500): a
body that is not declared ``application/json`` (one ``Content-Type``, parameters aside) is
refused with 415 before it is read, in every mode (a page of another site can make a
browser POST ``text/plain``, a form's media types or no type at all without asking the
server first: on a demo-open server, where no token means admin, that ran forged
mutations); an oversized body is refused from its Content-Length (or while streaming)
with 413 without reading the rest; a body not received within ``body_timeout_s`` of the
request's head (``CDMS_BODY_TIMEOUT_SECONDS``: half a body held a connection and a task
for good) is a 408 and the connection closed, a client gone mid-body ends the request
quietly (it wrote a traceback per connection); malformed or over-deep JSON, a missing
query, too many batched operations are 400; then :mod:`api.pipeline` decides
(400/403/429/503) before anything runs, for the whole batch (all or nothing: a batch is
not half run). An answer whose only errors say the database is unreachable is a 503 with
Retry-After.

``Idempotency-Key`` (header) is the key of the request's one ``placeOrder`` (its
``input.idempotencyKey`` may say it too); the header twice (even with one value) is a 400
BAD_USER_INPUT, as for ``Cdms-Commit-Lsn``, and so is a value beyond visible ASCII (a
header's bytes have no agreed encoding: such a key goes in ``input.idempotencyKey``).

``Cdms-Commit-Lsn``: a mutation's answer carries it (the WAL position after its commit,
also in ``extensions.commitLsn``); sent back on a later request, that request's reads see
the write (a replica serves them only once it has replayed it: db/replicas.py). A value
that is not a WAL position, or the header twice, is a 400 BAD_USER_INPUT.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from api.auth import Principal
from api.errors import error_body
from api.pipeline import Operation, Pipeline, Refusal, parse_body
from db.errors import BadUserInputError, CdmsError
from db.replicas import HEADER, parse_lsn
from schema.execute import Executor, Result

log = logging.getLogger("cdms.api.http")


@dataclass(frozen=True)
class HttpLimits:
    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 30.0  # CDMS_BODY_TIMEOUT_SECONDS


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


MEDIA_TYPE = "application/json"


def is_json(request: Request) -> bool:
    """Whether the request declares one ``Content-Type``, ``application/json`` (any case,
    any parameters: the body must be UTF-8 JSON whatever its ``charset`` says)."""
    declared = request.headers.getlist("content-type")
    if len(declared) != 1:
        return False
    return declared[0].partition(";")[0].strip().lower() == MEDIA_TYPE


KEY_HEADER = "Idempotency-Key"
# What the header may hold: visible ASCII, spaces inside. Its bytes have no agreed encoding
# (Starlette reads Latin-1, curl and Go send UTF-8, a browser's fetch Latin-1), so a key
# beyond ASCII would not be the same key as in input.idempotencyKey (JSON: UTF-8).
_VISIBLE_ASCII = re.compile(r"[\x20-\x7e]*")  # (empty or blank: refused as in the input)


def one_header(request: Request, name: str) -> str | None:
    """The value of header ``name``, which a request sends at most once: twice is a 400
    BAD_USER_INPUT naming it, whatever the values (also the same one twice), before the
    request takes a rate-limit token. Which one the client meant is anyone's guess, and a
    proxy that adds one behind the client's would pick for it."""
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise BadUserInputError(
            f"send one {name} header (this request has {len(values)})", field=name
        )
    return values[0] if values else None


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, data=True), status_code=status, headers=headers)


def refusal_response(refusal: Refusal) -> JSONResponse:
    return JSONResponse(
        {"data": None, "errors": refusal.formatted()},
        status_code=refusal.status,
        headers=refusal.headers,
    )


class GraphQLHttp:
    def __init__(self, pipeline: Pipeline, executor: Executor, limits: HttpLimits) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def _read_body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isascii() and declared.isdigit():
            digits = declared.lstrip("0")  # (compared as digits: int() stops at 4,300)
            if len(digits) > len(str(limit)) or int(digits or "0") > limit:
                raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise _TooLarge
                    chunks.append(chunk)
        except TimeoutError:
            raise _TooSlow from None
        return b"".join(chunks)

    async def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return error_response(
                405,
                "METHOD_NOT_ALLOWED",
                "use POST for operations (GET in a browser: GraphiQL)",
                {"Allow": "POST"},
            )
        if not is_json(request):  # not something a browser sends cross-site unasked
            return error_response(
                415,
                "UNSUPPORTED_MEDIA_TYPE",
                f"send operations as JSON, with Content-Type: {MEDIA_TYPE}",
            )
        principal = request.scope.get("state", {}).get("principal")
        assert isinstance(principal, Principal)  # api.security put it there
        try:
            body = await self._read_body(request)
        except _TooLarge:
            return error_response(
                413, "PAYLOAD_TOO_LARGE", f"request body exceeds {self.limits.max_body_bytes} bytes"
            )
        except ClientDisconnect:  # gone mid-body: nobody to answer, nothing to log loudly
            log.debug("client closed the connection before sending the whole body")
            return Response(status_code=400)  # (not sent: the connection is gone)
        except _TooSlow:
            return error_response(
                408,
                "REQUEST_TIMEOUT",
                f"request body not received within {self.limits.body_timeout_s:g} s",
                {"Connection": "close"},
            )
        try:  # every check before anything runs: a refusal is the whole request's
            key = one_header(request, KEY_HEADER)
            if key is not None and not _VISIBLE_ASCII.fullmatch(key):
                raise BadUserInputError(
                    "the Idempotency-Key header takes visible ASCII characters only (a"
                    " header's other bytes have no agreed encoding): send a key with other"
                    " characters as input.idempotencyKey",
                    field=KEY_HEADER,
                )
            if key is not None and "," in key:  # RFC 9110 joins repeated lines with commas
                raise BadUserInputError(
                    "one Idempotency-Key without commas: a comma is how a proxy joins two"
                    " header lines",
                    field=KEY_HEADER,
                )
            # Cdms-Commit-Lsn: this request's reads must see that commit
            lsn = one_header(request, HEADER)
            min_lsn = None if lsn is None else parse_lsn(lsn)
            payload = parse_body(body, self.pipeline.limits)
            batch = isinstance(payload, list)
            if batch and not payload:
                raise BadUserInputError("empty batch")
            ops = [Operation.from_json(p, body) for p in (payload if batch else [payload])]
            prepared = await self.pipeline.prepare(ops, principal, size=len(body))
            places = sum(p.shape.roots.count(("Mutation", "placeOrder")) for p in prepared)
            if key is not None and places != 1:
                raise BadUserInputError(
                    "the Idempotency-Key header needs exactly one placeOrder in the"
                    " request; give each placeOrder its input.idempotencyKey instead",
                    field=KEY_HEADER,
                )
            for p in prepared:  # arguments a field refuses: nothing of the request runs
                refused = self.executor.refuses(p, alone=not batch)
                if refused is not None:
                    return Response(refused.json_bytes(), 400, media_type="application/json")
        except CdmsError as exc:
            return refusal_response(Refusal.of(exc))
        except Refusal as refusal:
            return refusal_response(refusal)
        ctx = self.executor.context(principal, idempotency_key=key, min_lsn=min_lsn)
        ctx.heavy = any(p.shape.cubes for p in prepared)  # the batch's one permit
        try:
            results = [await self.executor.run(p, ctx) for p in prepared]
        finally:
            await ctx.close()
        status = status_of(results, batch)
        # (nosniff: api/headers.py. No Cache-Control: answers are to POSTs, which no cache
        # stores without explicit freshness; `no-store` made Chromium abort the dashboard's
        # in-flight reads on a reload.)
        headers: dict[str, str] = {}
        if status == 503:
            headers["Retry-After"] = "1"
        wait = results[0].retry_after if not batch else None
        if wait is not None:
            headers["Retry-After"] = str(wait)
        lsns = [r.extensions["commitLsn"] for r in results if "commitLsn" in r.extensions]
        if lsns:  # the batch's last write: at or past every earlier one
            headers[HEADER] = max(lsns, key=parse_lsn)
        if batch:
            content = b"[" + b",".join(r.json_bytes() for r in results) + b"]"
        else:
            content = results[0].json_bytes()
        return Response(content, status_code=status, media_type="application/json", headers=headers)


def status_of(results: list[Result], batch: bool) -> int:
    if batch:
        return 503 if all(r.unavailable for r in results) else 200
    one = results[0]
    return 503 if one.unavailable else one.refused or one.status
