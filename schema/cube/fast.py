"""The fast path: an operation made only of ``cube`` fields (and ``__typename``), answered
without graphql-core's per-field execution.

graphql-core completes every cell of a list of objects with a Python call (a 50,000-row
answer of six fields is 300,000 of them, seconds of work). Here PostgreSQL writes each row
as the JSON object the selection asks for (``schema.cube.selection`` → ``semantic.shape``),
the rows are joined into the ``data`` object as text, and nothing walks the cells.

The interface, for whoever executes GraphQL requests:

    fast = await execute_fast(schema, document, operation, variables, context)

``schema`` is graphql-core's schema, ``document`` the parsed *and validated* document (the
query limits and role rules must have run), ``operation`` its query to run, ``variables``
the coerced variable values (api.pipeline.Prepared.coerced), ``context`` the request's
``schema.context.Context`` (its ``db.run``, ``role``). It returns None when the operation
is not for this path, or when reading it finds bad input (the ordinary resolver then runs
and reports the error with its path, as usual); otherwise a ``FastResult``:

- ``data``: the response's ``data`` object as JSON text (``"null"`` after an error),
- ``errors``: GraphQL errors (a failure while running, e.g. a timeout; codes unset: the
  schema's ``ErrorCodes`` classifies them),
- ``reports``: the ``extensions.cube`` entries, one per ``cube`` field.

``schema.execute.Executor`` calls it for every query of ``cube`` fields alone and sends
``data`` unparsed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
)
from graphql.execution.values import VariableValues

from db.errors import CdmsError
from schema.cube.extension import report_entry
from schema.cube.queries import MODEL, answer_and_status
from schema.cube.selection import CubeRequest, Reader
from semantic.service import prepare

log = logging.getLogger("cdms.api.cube")


@dataclass
class FastResult:
    data: str
    errors: list[GraphQLError] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class _Field:
    key: str
    nodes: list[FieldNode]
    request: CubeRequest | None  # None: __typename


def plan_operation(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: VariableValues,
    role: str | None,
) -> list[_Field] | None:
    """The operation's root fields as cube requests; None if it is not for this path."""
    reader = Reader(schema, document, operation, variables, MODEL)
    fields: list[_Field] = []
    try:
        for key, nodes in reader.roots().items():
            name = nodes[0].name.value
            if name == "__typename":
                fields.append(_Field(key, nodes, None))
            elif name == "cube":
                request = reader.request(nodes)
                if reader.drills:
                    return None  # a cell's drill reads the operational tables: the resolver
                query = prepare(MODEL, request.query, role)
                fields.append(_Field(key, nodes, CubeRequest(query, request.shape)))
            else:
                return None
    except CdmsError:
        return None  # the resolver reports it, with its path and locations
    except Exception:  # a reading this path does not foresee: the resolver's to judge
        log.exception("cube fast path: could not read the operation; the resolver runs")
        return None
    return fields if any(f.request for f in fields) else None


async def execute_fast(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    variables: VariableValues,
    context: Any,
) -> FastResult | None:
    role = getattr(context, "role", None)
    fields = plan_operation(schema, document, operation, variables, role)
    if fields is None or not hasattr(context, "db"):
        return None
    parts: list[str] = []
    result = FastResult(data="null")
    for f in fields:
        if f.request is None:
            parts.append(f'"{f.key}":"Query"')
            continue
        req = f.request
        try:
            got, status = await context.db.run(
                lambda conn, req=req: answer_and_status(conn, req.query, req.shape, role)
            )
        except Exception as exc:  # as graphql-core would: the field's error, data null
            result.errors.append(
                GraphQLError(str(exc), nodes=f.nodes, path=[f.key], original_error=exc)
            )
            return result
        result.reports.append(report_entry(f.key, got, status))
        parts.append(f'"{f.key}":{got.json}')
    result.data = "{" + ",".join(parts) + "}"
    return result
