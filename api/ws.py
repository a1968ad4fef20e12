"""GraphQL over WebSocket on ``/graphql``: both subprotocols, every operation through the
same pipeline as HTTP (api/pipeline.py: rate limit, persisted-only, validation, access,
cost), and the credential held to account for as long as the socket is open.

- ``graphql-transport-ws`` (the graphql-ws library): connection_init / connection_ack,
  subscribe / next / error / complete, ping / pong. Close codes: 4400 bad message, 4401
  unauthorized (no or bad credential, or an expired token), 4403 revoked credential
  (at the handshake: a page of another site), 4408 no connection_init in time, or a
  message the client did not take within ``CDMS_WS_SEND_TIMEOUT_SECONDS``, 4409 duplicate
  operation id, 4429 repeated connection_init (or a socket past a bound: one address's
  sockets waiting for theirs, ``SocketLimits.max_waiting_per_address``), 1009 a message
  larger than the request body limit (``CDMS_MAX_BODY_BYTES``), 1013 the database cannot
  check the credential now.
- ``graphql-ws`` (the older subscriptions-transport-ws): connection_init /
  connection_ack (or connection_error), start / data / error / complete, stop,
  connection_terminate; the same checks, the same close codes.

A handshake whose ``Origin`` header names another site is refused before it is accepted
(4403; an HTTP 403 to the browser): CORS does not apply to WebSockets, so without this a
page of any site could open a socket to the API and, on a demo-open server where no
token means admin, read the shop. Allowed: no ``Origin`` (not a browser), the server's own
origin (the ``Host`` header's host and port: the pages it serves, GraphiQL and the
dashboard, behind a TLS proxy too) and the origins of ``CDMS_CORS_ORIGINS``.

The credential comes from the handshake's ``Authorization`` header or, as browsers must
send it, from the ``connection_init`` payload (``{"Authorization": "Bearer …"}`` or
``{"headers": {"Authorization": …}}``). It is checked again before every operation (an
API key within the same cache window as HTTP) and watched while the socket is open: the
socket is closed when a JWT expires (4401) or an API key is revoked (4403: within
``max(CDMS_APIKEY_CACHE_SECONDS, 1 s)``, one lookup per key and interval for all its
sockets, api/keywatch.py). Two different credentials (the handshake's header and the
payload's, or two in the payload) are refused with 4400, as HTTP refuses two
``Authorization`` headers: none of them is picked.

A socket holds at most ``SocketLimits.max_unsent`` answers computed and not yet handed to
the connection, and one credential's sockets ``max_unsent_per_principal`` together: a query
or mutation past them waits before it runs (a client that reads
nothing gets nothing more computed for it); a subscription computes its next event only
once its last one was sent. A message the client does not take within the send timeout
closes the socket with 4408 (``cdms serve`` drops the connection if the client does not
read the close either: api/connection.py). An answer goes out as the JSON text PostgreSQL
wrote, never parsed into Python objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from graphql import OperationType
from starlette.types import Receive, Scope, Send
from starlette.websockets import (
    WebSocket,
    WebSocketDisconnect,
    WebSocketDisconnected,
    WebSocketState,
)

from api.auth import Principal, UnauthenticatedError, authenticate, bearer_token
from api.keywatch import KeyWatch
from api.pipeline import Operation, Pipeline, Refusal
from api.security import SecurityConfig, client_bucket, credential_key, host_of
from db.errors import CdmsError, QueryTooComplexError, shown
from db.replicas import parse_lsn
from schema.errors import api_error
from schema.execute import Executor, Result

log = logging.getLogger("cdms.api.ws")

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
PROTOCOLS = (TRANSPORT_WS, LEGACY_WS)
ALL_KINDS = (OperationType.QUERY, OperationType.MUTATION, OperationType.SUBSCRIPTION)


@dataclass(frozen=True)
class SocketLimits:
    init_timeout_s: float = 10.0
    keep_alive_s: float = 15.0  # graphql-ws "ka" messages
    max_operations: int = 100  # operations running at once on one socket
    # operations running at once for one credential (its rate-limit bucket) over all of
    # this process's sockets: opening more sockets does not raise the first bound
    max_per_principal: int = 500
    # the summed cost of one credential's running subscriptions over all of this process's
    # sockets, in query cost limits (CDMS_MAX_QUERY_COST): each event of a subscription is
    # read again for each subscriber, so 500 subscriptions at the cost limit made one status
    # change 500 reads of that size (7 MB and 21 s of CPU for one rate token)
    subscription_costs: int = 5
    # sockets open at once for one credential (its rate-limit bucket; the shared demo
    # principal: per client address), per process: idle ones cost a task and memory each
    max_sockets_per_principal: int = 100
    # sockets accepted and not yet acknowledged (connection_init not sent, or its credential
    # being checked) from one client address, per process: each holds a task and memory for
    # up to init_timeout_s, counted against no credential (3,000 in 4 s held 172 MB)
    max_waiting_per_address: int = 64
    # answers of one socket computed (or being computed) and not yet handed to the
    # connection: a query or mutation past them waits before it runs
    max_unsent: int = 4
    # the same over all of one credential's sockets in this process (the demo principal:
    # per client address): 100 sockets that read nothing held 100 x 4 answers
    max_unsent_per_principal: int = 8
    # a message not taken by the connection in this time closes the socket (4408);
    # CDMS_WS_SEND_TIMEOUT_SECONDS
    send_timeout_s: float = 30.0
    max_id_chars: int = 128  # an operation id, sent back in each of its messages
    max_ping_payload_bytes: int = 1_024  # a ping's payload, sent back in the pong (as JSON)


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class GraphQLSockets:
    def __init__(
        self,
        pipeline: Pipeline,
        executor: Executor,
        config: SecurityConfig,
        limits: SocketLimits | None = None,
        max_message_bytes: int = 1_000_000,
    ) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.config = config
        self.limits = limits or SocketLimits()
        # a message is a request: the HTTP body limit (CDMS_MAX_BODY_BYTES) holds for it too
        self.max_message_bytes = max_message_bytes
        # the API keys of open sockets, each looked up once per interval for all its sockets
        self.keys = KeyWatch(executor.engine, config.apikey_cache_s)
        self.running: Counter[str] = Counter()  # operations running, by principal's bucket
        self.subscribed: Counter[str] = Counter()  # running subscriptions' cost, by the same
        self.sockets: Counter[str] = Counter()  # acknowledged sockets, by the same
        # sockets not yet acknowledged, by client address (api.security.client_bucket)
        self.waiting: Counter[str] = Counter()
        # unsent answers' slots by credential (as sockets): [semaphore, sockets waiting or
        # holding]; an entry goes when no socket uses it (a semaphore is bound to its loop)
        self._unsent: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def unsent_slot(self, key: str) -> AsyncIterator[None]:
        """A slot of ``key``'s unsent answers (SocketLimits.max_unsent_per_principal)."""
        entry = self._unsent.get(key)
        if entry is None:
            entry = (asyncio.Semaphore(self.limits.max_unsent_per_principal), [0])
            self._unsent[key] = entry
        entry[1][0] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1][0] -= 1
            if not entry[1][0]:
                del self._unsent[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ws = WebSocket(scope, receive, send)
        if not origin_allowed(scope, self.config.cors_origins):
            await ws.close(code=4403, reason="cross-origin WebSocket refused")
            return
        offered = scope.get("subprotocols") or []
        protocol = next((p for p in offered if p in PROTOCOLS), None)
        if protocol is None:
            await ws.close(code=4406, reason="use subprotocol graphql-transport-ws or graphql-ws")
            return
        # sockets waiting for connection_init count by client address, as the demo
        # principal's and bad credentials' bounds; one whose handshake carried a credential
        # by that credential (behind a proxy every client has its address: anonymous
        # sockets held there must not refuse the users who have a key)
        principal = scope.get("state", {}).get("principal")
        waiting = client_bucket(scope) if principal is None else credential_key(principal, scope)
        limit = self.limits.max_waiting_per_address
        if self.waiting[waiting] >= limit:
            await ws.accept(subprotocol=protocol)
            await ws.close(4429, f"too many sockets waiting for connection_init (at most {limit})")
            return
        session = _Session(self, ws, protocol, principal)
        self.waiting[waiting] += 1
        session.waiting = waiting
        try:
            await ws.accept(subprotocol=protocol)
            await session.run()
        finally:
            session.stop_waiting()


class _Session:
    def __init__(
        self, server: GraphQLSockets, ws: WebSocket, protocol: str, principal: Principal | None
    ) -> None:
        self.server = server
        self.ws = ws
        self.protocol = protocol
        self.legacy = protocol == LEGACY_WS
        self.principal = principal
        self.authorization: str | None = ws.headers.get("authorization")
        self.acknowledged = False
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.watcher: asyncio.Task[None] | None = None
        # graphql-ws's "ka" messages: the server's task, not one of the client's operations
        # (SocketLimits.max_operations counts those only; no operation id reaches it)
        self.keep_alive: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()
        # queries and mutations computing, or answered and not yet sent (a slot each)
        self.unsent = asyncio.Semaphore(server.limits.max_unsent)
        self.closing = False  # a close was sent: nothing more goes out
        self.counted: str | None = None  # the key it counts under in server.sockets
        self.waiting: str | None = None  # the address it counts under in server.waiting

    # --- the socket's life ---------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._loop()
        except _Close as close:
            await self._close(close.code, close.reason)
        except WebSocketDisconnect:
            pass
        finally:
            if self.counted is not None:  # (a Counter's -= drops what reaches 0)
                self.server.sockets -= Counter({self.counted: 1})
            tasks = list(self.operations.values())
            if self.keep_alive is not None:
                tasks.append(self.keep_alive)
            for task in tasks:
                task.cancel()
            if self.watcher is not None:
                self.watcher.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _loop(self) -> None:
        # the init timeout holds until connection_ack, not for the first message only: a
        # ping, pong or complete before connection_init kept a socket open, and uncounted
        deadline = asyncio.get_running_loop().time() + self.server.limits.init_timeout_s
        while not self.acknowledged:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await self._receive()
            except TimeoutError:
                raise _Close(4408, "connection initialisation timeout") from None
            await self._handle(message)
        while True:
            await self._handle(await self._receive())

    async def _receive(self) -> dict[str, Any]:
        if self.ws.application_state is not WebSocketState.CONNECTED:
            # closed by the server, or a send found the client gone (see _send): what it
            # sent before is not run
            raise WebSocketDisconnect(1006)
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            raise _Close(4400, "WebSocket messages must be text")
        limit = self.server.max_message_bytes
        if len(text) > limit or (4 * len(text) > limit and len(text.encode("utf-8")) > limit):
            # RFC 6455's "message too big"; nothing of it is parsed
            raise _Close(1009, f"message exceeds {limit} bytes")
        from api.pipeline import json_depth_ok

        if not json_depth_ok(text, self.server.pipeline.limits.max_json_depth):
            raise _Close(4400, "message nested too deep")
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise _Close(4400, "message is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            raise _Close(4400, "message must be a JSON object with a type")
        if "\\u" in text:  # JSON may escape half a UTF-16 pair: valid JSON, not text
            # what is sent back as it came (an id, a ping's payload) must be Unicode; an
            # operation's payload is the operation's error (BAD_USER_INPUT), not the socket's
            echoed = [data.get("id")]
            if data["type"] in ("ping", "pong"):
                echoed.append(data.get("payload"))
            try:
                json.dumps(echoed, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise _Close(4400, "message holds a lone UTF-16 surrogate") from None
        return data

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_text(json.dumps(message, separators=(",", ":"), ensure_ascii=False))

    async def _send_text(self, text: str) -> None:
        """One message, in turn; one the connection does not take within the send timeout
        (the client reads nothing) closes the socket with 4408 and is dropped."""
        timeout = self.server.limits.send_timeout_s
        async with self.send_lock:
            ws = self.ws
            connected = WebSocketState.CONNECTED
            if self.closing or not (
                ws.client_state is connected and ws.application_state is connected
            ):
                # a client gone meanwhile (or a socket the server closed): the message is
                # dropped, as every later one, and the receive loop stops (_receive). It
                # raised from the operation or refusal being answered: a ~45-line
                # traceback each, 132 in 30 s of a reconnect storm
                return
            try:
                async with asyncio.timeout(timeout):
                    await ws.send_text(text)
            except TimeoutError:
                log.warning(
                    "WebSocket from %s closed (4408): a message waited %g s for the client to read",
                    client_bucket(self.ws.scope),
                    timeout,
                )
                await self._close(4408, f"send timeout: the client read nothing for {timeout:g} s")
            except (WebSocketDisconnect, WebSocketDisconnected):
                pass  # gone while it was sent: dropped, as above

    async def _close(self, code: int, reason: str) -> None:
        # a close frame holds 123 bytes of reason (UTF-8): cut there, not mid-character
        fits = reason.encode("utf-8")[:123].decode("utf-8", "ignore")
        if self.closing:
            return
        self.closing = True
        if self.ws.client_state is WebSocketState.CONNECTED:
            # bounded: a server that waits for a client that reads nothing before it
            # writes the close must not hold the session (cdms serve writes it at once)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.server.limits.send_timeout_s):
                    await self.ws.close(code=code, reason=fits)

    # --- messages ------------------------------------------------------------------------
    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "connection_init":
            await self._init(msg.get("payload"))
        elif kind in ("subscribe", "start"):
            if kind != ("start" if self.legacy else "subscribe"):
                raise _Close(4400, f"unknown message type {shown(kind)} for {self.protocol}")
            await self._start(msg)
        elif kind in ("complete", "stop"):
            task = self.operations.pop(str(msg.get("id")), None)
            if task is not None:
                task.cancel()
        elif kind == "ping" and not self.legacy:
            pong: dict[str, Any] = {"type": "pong"}
            if "payload" in msg:
                limit = self.server.limits.max_ping_payload_bytes
                echoed = json.dumps(msg["payload"], separators=(",", ":"), ensure_ascii=False)
                if len(echoed.encode("utf-8")) > limit:
                    raise _Close(4400, f"a ping's payload is at most {limit} bytes of JSON")
                pong["payload"] = msg["payload"]
            await self._send(pong)
        elif kind == "pong" and not self.legacy:
            pass
        elif kind == "connection_terminate" and self.legacy:
            raise _Close(1000, "terminated")
        else:
            raise _Close(4400, f"unknown message type {shown(kind)}")

    async def _init(self, payload: Any) -> None:
        if self.acknowledged:
            raise _Close(4429, "too many initialisation requests")
        if payload is not None and not isinstance(payload, dict):
            raise _Close(4400, "invalid connection_init payload")
        sent = _payload_authorizations(payload or {})
        given = {a.strip() for a in [*sent, self.authorization] if a is not None}
        if len(given) > 1:  # as HTTP refuses two Authorization headers: none is picked
            raise _Close(
                4400,
                "send one credential: the connection_init payload and the handshake's"
                " Authorization header name different ones",
            )
        if sent:
            self.authorization = sent[0]
        try:
            self.principal = await self._authenticate()
        except UnauthenticatedError as exc:
            if self.legacy:
                await self._send({"type": "connection_error", "payload": _error(exc)})
            try:  # bad credentials take from the address's bucket, as over HTTP
                await self.server.pipeline.admit(client_bucket(self.ws.scope))
            except Refusal as refusal:
                if refusal.code == "RATE_LIMITED":
                    raise _Close(4429, refusal.errors[0].message) from None
            raise _Close(4401, exc.message) from None
        except CdmsError as exc:
            raise _Close(1013, exc.message) from None
        self._count(self.principal)
        self.acknowledged = True
        self.stop_waiting()  # it counts against its credential now
        await self._send({"type": "connection_ack"})
        self.watcher = asyncio.create_task(self._watch(), name="ws credential watch")
        if self.legacy:
            self.keep_alive = asyncio.create_task(self._keep_alive(), name="ws keep-alive")

    def stop_waiting(self) -> None:
        """No longer count this socket as waiting for connection_init (acknowledged, or
        gone)."""
        if self.waiting is not None:  # (a Counter's -= drops what reaches 0)
            self.server.waiting -= Counter({self.waiting: 1})
            self.waiting = None

    def _count(self, principal: Principal) -> None:
        """Count this socket against its credential's bound (4429 past it)."""
        key = credential_key(principal, self.ws.scope)
        sockets = self.server.sockets
        limit = self.server.limits.max_sockets_per_principal
        if sockets[key] >= limit:
            raise _Close(4429, f"too many sockets for one credential (at most {limit})")
        sockets[key] += 1
        self.counted = key

    async def _authenticate(self) -> Principal:
        config = self.server.config
        return await authenticate(
            self.server.executor.engine,
            self.authorization,
            jwt_rules=config.jwt_rules,
            demo_open=config.demo_open_for(self.ws.scope),
            key_cache_s=config.apikey_cache_s,
        )

    async def _recheck(self) -> Principal:
        """The credential again, before an operation (closes on a revoked/expired one)."""
        try:
            principal = await self._authenticate()
        except UnauthenticatedError as exc:
            code = 4401 if "expired" in exc.message else 4403
            raise _Close(code, exc.message) from None
        self.principal = principal
        return principal

    async def _watch(self) -> None:
        """Close the socket when its token expires or its key is revoked (the key's watch
        is shared by all its sockets: api/keywatch.py)."""
        principal = self.principal
        if principal is None:
            return
        if principal.key_id is not None and self.authorization is not None:
            token = bearer_token(self.authorization)
            async with self.server.keys.watching(principal.key_id, token) as revoked:
                await revoked.wait()
            await self._close(4403, "API key revoked")
            return
        while principal.expires_at is not None:  # a JWT (the demo principal: never)
            left = principal.expires_at - time.time()
            if left <= 0:
                await self._close(4401, "token expired")
                return
            await asyncio.sleep(left)

    async def _keep_alive(self) -> None:
        while True:
            await self._send({"type": "ka"})
            await asyncio.sleep(self.server.limits.keep_alive_s)

    async def _start(self, msg: dict[str, Any]) -> None:
        if not self.acknowledged:
            raise _Close(4401, "unauthorized: send connection_init first")
        op_id = msg.get("id")
        if not isinstance(op_id, str) or not op_id:
            raise _Close(4400, "an operation needs a string id")
        limits = self.server.limits
        if len(op_id) > limits.max_id_chars:  # it comes back in every message of it
            raise _Close(4400, f"an operation id is at most {limits.max_id_chars} characters")
        if op_id in self.operations:
            if self.legacy:  # subscriptions-transport-ws replaces the operation
                self.operations.pop(op_id).cancel()
            else:
                raise _Close(4409, f"subscriber for {shown(op_id)} already exists")
        try:
            if len(self.operations) >= limits.max_operations:
                raise QueryTooComplexError(
                    f"too many operations on one socket (at most {limits.max_operations}):"
                    " complete one first",
                    limit=limits.max_operations,
                )
            # SERVICE_UNAVAILABLE when the key cannot be looked up now (closes if revoked)
            principal = await self._recheck()
            bucket = principal.bucket
            if self.server.running[bucket] >= limits.max_per_principal:
                raise QueryTooComplexError(
                    "too many operations at once for one credential (at most"
                    f" {limits.max_per_principal} over all its sockets): complete one first",
                    limit=limits.max_per_principal,
                )
            op = Operation.from_json(msg.get("payload"))
            # read-your-writes over a socket: what the Cdms-Commit-Lsn header is over HTTP
            lsn = (op.extensions or {}).get("commitLsn")
            min_lsn = None if lsn is None else parse_lsn(lsn, "extensions.commitLsn")
            prepared = (await self.server.pipeline.prepare([op], principal, ALL_KINDS))[0]
            refused = self.server.executor.refuses(prepared, alone=True)
            if refused is not None:  # an argument a field refuses: nothing runs
                await self._send_errors(op_id, refused.errors)
                return
            cost = prepared.cost if prepared.kind is OperationType.SUBSCRIPTION else 0
            budget = limits.subscription_costs * self.server.pipeline.limits.max_cost
            if cost and self.server.subscribed[bucket] + cost > budget:
                raise QueryTooComplexError(
                    f"subscriptions of cost {self.server.subscribed[bucket] + cost} at once for"
                    f" one credential exceed {budget} (each event is read for each of them):"
                    " complete one first",
                    cost=self.server.subscribed[bucket] + cost,
                    limit=budget,
                )
        except Refusal as refusal:
            await self._send_errors(op_id, refusal.formatted())
            return
        except CdmsError as exc:
            await self._send_error(op_id, exc)
            return
        task = asyncio.create_task(self._run(op_id, op, prepared, principal, min_lsn))
        self.operations[op_id] = task
        self.server.running[bucket] += 1
        self.server.subscribed[bucket] += cost
        task.add_done_callback(lambda _: self._forget(op_id, task, bucket, cost))

    def _forget(self, op_id: str, task: asyncio.Task[None], bucket: str, cost: int) -> None:
        if self.operations.get(op_id) is task:
            del self.operations[op_id]
        self.server.running -= Counter({bucket: 1})
        self.server.subscribed -= Counter({bucket: cost})

    async def _run(
        self, op_id: str, op: Operation, prepared: Any, principal: Principal, min_lsn: int | None
    ) -> None:
        executor = self.server.executor
        ctx = executor.context(principal, min_lsn=min_lsn)
        persisted = (op.extensions or {}).get("persistedQuery") is not None
        try:
            if prepared.kind is OperationType.SUBSCRIPTION:
                async with contextlib.aclosing(executor.subscribe(prepared, ctx)) as events:
                    async for result in events:
                        # the event is resolved: its connection (and its permit of the
                        # subscriptions' gate, schema.subscriptions.db_gate) go back before
                        # it is sent, so a client slow to read holds neither
                        await ctx.close()  # no transaction stays open between events
                        if persisted and not await self._still_persisted(op_id, op, principal):
                            return  # withdrawn (cdms persisted remove): no more events
                        await self._send_text(self._next_text(op_id, result))
            else:
                # a slot of the socket's unsent answers before it runs, until its answer
                # is handed to the connection: past them, an operation waits to run
                async with self.unsent, self.server.unsent_slot(self.counted or ""):
                    if self.closing:
                        return  # closed while it waited: nothing runs for nobody
                    # the message's text only is kept while it waits to be sent
                    text = self._next_text(op_id, await executor.run(prepared, ctx))
                    await ctx.close()  # its connection goes back before the answer is sent
                    await self._send_text(text)
            await self._send({"id": op_id, "type": "complete"})
        except asyncio.CancelledError:
            raise
        except Exception:  # never a traceback to the client; the socket stays usable
            log.exception("operation %s on a WebSocket failed", op_id)
            await self._send_errors(
                op_id, [{"message": "Internal server error", "extensions": {"code": "INTERNAL"}}]
            )
        finally:
            await ctx.close()

    async def _still_persisted(self, op_id: str, op: Operation, principal: Principal) -> bool:
        """Whether a subscription started from a persisted query may deliver its next event:
        its document is still on the allow-list (read again after the same cache window as
        a new operation), else its error ends the operation."""
        try:
            await self.server.pipeline.resolve(op, principal)
        except CdmsError as exc:
            await self._send_error(op_id, exc)
            return False
        return True

    def _next_text(self, op_id: str, result: Result) -> str:
        head = json.dumps(
            {"id": op_id, "type": "data" if self.legacy else "next"},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        # the answer's JSON text as PostgreSQL wrote it, spliced in unparsed
        return "".join((head[:-1], ',"payload":', result.json_text(), "}"))

    async def _send_errors(self, op_id: str, errors: list[dict[str, Any]]) -> None:
        # graphql-transport-ws: a list of errors; graphql-ws: one error object
        payload: Any = errors[0] if self.legacy else errors
        await self._send({"id": op_id, "type": "error", "payload": payload})

    async def _send_error(self, op_id: str, exc: CdmsError) -> None:
        await self._send_errors(op_id, [_error(exc)])


def _error(exc: CdmsError) -> dict[str, Any]:
    message, extensions = api_error(exc)
    return {"message": message, "extensions": extensions}


_DEFAULT_PORTS = {"http": 80, "ws": 80, "https": 443, "wss": 443}


def origin_allowed(scope: Scope, allowed: tuple[str, ...]) -> bool:
    """Whether a handshake may come from its ``Origin``: none sent (not a browser), one of
    ``allowed`` (``CDMS_CORS_ORIGINS``, compared as CORS compares them; ``*`` allows every
    one), or the server's own: the ``Host`` header's host and port (scheme-less, as a TLS
    proxy in front makes the page ``https:`` and the socket the server sees ``ws:``)."""
    sent = [v.decode("latin-1") for k, v in scope["headers"] if k == b"origin"]
    if not sent:
        return True
    if len(sent) > 1:
        return False
    origin = sent[0].strip()
    if "*" in allowed or origin in allowed:
        return True
    own = host_of(scope)
    if own is None:
        return False
    try:
        parts = urlsplit(origin)
        default = _DEFAULT_PORTS.get(parts.scheme.lower())
        if default is None or parts.path or parts.query or parts.fragment or parts.username:
            return False
        if own.path or own.username:
            return False
        mine = (own.hostname, own.port or default)
        theirs = (parts.hostname, parts.port or default)
    except ValueError:  # a port that is not a number
        return False
    return theirs[0] is not None and theirs == mine


def _payload_authorizations(payload: dict[str, Any]) -> list[str]:
    """The tokens of a connection_init payload: ``Authorization``/``authorization``,
    under ``headers`` or not (Hasura, Apollo and GraphiQL send one of these)."""
    found = []
    for holder in (payload, payload.get("headers")):
        if isinstance(holder, dict):
            for key in ("Authorization", "authorization"):
                value = holder.get(key)
                if isinstance(value, str) and value.strip():
                    found.append(value)
    return found
