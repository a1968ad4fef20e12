"""Prediction fields on the compiled read path: one statement, then one model run per model
for the objects whose prediction is not stored.

A compiled query that selects ``Order.predictedStatus``/``predictedTotal``,
``SupportTicket.predictedStatus`` or ``Customer.expectedOrderValue`` still builds its whole
page in one statement. :mod:`schema.compiled.sql` joins the stored prediction of each order
and ticket (``ml.stored``: by primary key and the model's active version) and puts it
where the field goes, shaped by its selection; where there is none (an object loaded since
the last scoring, a model just activated, customers' current features) it puts
``{"cdms:pending": id}`` (RLS has already chosen the objects). ``Built.predictions`` keeps
the paths that lead to prediction fields (:func:`sites_of`). :func:`complete` walks those
and the data together, collects the pending ids per object kind, fetches their features with ONE
statement per kind (``ml.batch.load``: the feature tables by id), scores every object of
a model in ONE onnxruntime run (``ml.batch.score_groups``, in worker threads, the models
side by side; it also queues the prediction log) and writes each prediction, shaped by
its selection, where its id was. The Strawberry
resolvers use the same ``ml.batch`` functions, so the two paths answer byte for byte the
same, errors included: no active model gives null and ``MODEL_UNAVAILABLE``, an object
the ETL has not loaded yet null and ``NOT_IN_WAREHOUSE``, each with its field's path and
locations, in the order the Strawberry path reports them (:func:`_error_order`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, NamedTuple

from graphql import GraphQLError, GraphQLObjectType
from graphql.execution.collect_fields import FieldDetails
from sqlalchemy.engine import Connection
from starlette.concurrency import run_in_threadpool

from db.errors import CdmsError
from ml import batch
from ml.batch import Features, Predicted
from ml.errors import ModelUnavailableError
from ml.serving import store_for
from schema.catalog import Entity
from schema.compiled import plan as P
from schema.compiled.sql import PENDING, Built
from schema.context import Context

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Sel:
    """One field of a prediction's selection: ``name`` under response key ``key``."""

    key: str
    name: str
    typename: str  # the type the field belongs to (for __typename)
    fields: tuple[Sel, ...] = ()  # of an object field (probabilities, model)


def plan_field(
    walk: Any,
    ent: Entity,
    py: str,
    key: str,
    gtype: Any,
    details: list[FieldDetails],
) -> P.Predict:
    """The plan of a prediction field (``walk`` is the planner's ``_Walk``)."""
    kind, model = P.PREDICTION_FIELDS[(ent.name, py)]
    if not isinstance(gtype, GraphQLObjectType):
        raise P.NotCompilable(f"{ent.name}.{py}")
    fields = _selection(walk, gtype, details)
    return P.Predict(key, kind, model, fields, tuple(d.node for d in details))


def _selection(walk: Any, gtype: GraphQLObjectType, details: list[FieldDetails]) -> tuple[Sel, ...]:
    out: list[Sel] = []
    for key, sub in walk.subfields(gtype, details).items():
        name = sub[0].node.name.value
        if name == "__typename":
            out.append(Sel(key, name, gtype.name))
            continue
        gfield = gtype.fields.get(name)
        if gfield is None:
            raise P.NotCompilable(f"{gtype.name}.{name}")
        target = P._named(gfield.type)
        if isinstance(target, GraphQLObjectType):
            out.append(Sel(key, name, gtype.name, _selection(walk, target, sub)))
        elif name in _SCALARS:
            out.append(Sel(key, name, gtype.name))
        else:
            raise P.NotCompilable(f"{gtype.name}.{name}")
    return tuple(out)


_SCALARS = {"label", "probability", "value", "name", "version"}


@dataclass(frozen=True)
class NodeSites:
    """Where a node's predictions are: its prediction fields, and its relations that lead
    to more (in document order), each ``(key, "one" | "many" | "conn", sites)``."""

    predicts: tuple[P.Predict, ...]
    children: tuple[tuple[str, str, NodeSites | ConnSites], ...]


@dataclass(frozen=True)
class ConnSites:
    """A connection's node selections that lead to predictions: ``(edges key, node key)``."""

    edges: tuple[tuple[str, str, NodeSites], ...]


@dataclass(frozen=True)
class Sites:
    """The prediction fields of an operation: what ``Built.predictions`` holds, so that a
    request walks only the paths that lead to one. Root entries: ``(key, sites)``."""

    roots: tuple[tuple[str, NodeSites | ConnSites], ...]


def sites_of(op: P.Operation) -> Sites | None:
    """The operation's prediction sites, or None when it has no prediction field."""

    def node(n: P.Node) -> NodeSites | None:
        predicts = tuple(f for f in n.fields if isinstance(f, P.Predict))
        children: list[tuple[str, str, NodeSites | ConnSites]] = []
        for f in n.fields:
            if isinstance(f, P.One | P.Many):
                found = node(f.node)
                if found is not None:
                    children.append((f.key, "one" if isinstance(f, P.One) else "many", found))
            elif isinstance(f, P.Conn):
                c = conn(f)
                if c is not None:
                    children.append((f.key, "conn", c))
        return NodeSites(predicts, tuple(children)) if predicts or children else None

    def conn(c: P.Conn) -> ConnSites | None:
        edges = []
        for f in c.fields:
            if isinstance(f, P.Edges):
                for e in f.fields:
                    if isinstance(e, P.EdgeNode):
                        found = node(e.node)
                        if found is not None:
                            edges.append((f.key, e.key, found))
        return ConnSites(tuple(edges)) if edges else None

    roots: list[tuple[str, NodeSites | ConnSites]] = []
    for f in op.fields:
        found = (
            node(f.node) if isinstance(f, P.ById) else conn(f) if isinstance(f, P.Conn) else None
        )
        if found is not None:
            roots.append((f.key, found))
    return Sites(tuple(roots)) if roots else None


# --- filling in ---------------------------------------------------------------------------


class _Site(NamedTuple):
    """Where a prediction goes: the object holding it, the field, the object's id."""

    parent: dict[str, Any]
    path: Path  # of the object holding it
    sel: P.Predict
    id: int
    level: int  # database round trips the Strawberry path makes before resolving it


def _sites(sites: Sites, data: dict[str, Any]) -> list[_Site]:
    """Every prediction field of the response, in document order."""
    out: list[_Site] = []
    append = out.append

    def node(n: NodeSites, obj: Any, path: Path, level: int) -> None:
        if obj.__class__ is not dict:
            return  # a null object
        for f in n.predicts:
            value = obj.get(f.key)
            if value.__class__ is dict:  # else null: the object is absent
                pending = value.get(PENDING)  # else the stored prediction, already in place
                if pending is not None:
                    append(_Site(obj, path, f, int(pending), level))
        for key, how, child in n.children:
            value = obj.get(key)
            if isinstance(child, ConnSites):
                conn(child, value, (*path, key), level + 1)
            elif how == "one":
                node(child, value, (*path, key), level + 1)
            else:
                for i, item in enumerate(value or ()):
                    node(child, item, (*path, key, i), level + 1)

    def conn(c: ConnSites, obj: Any, path: Path, level: int) -> None:
        if obj.__class__ is not dict:
            return
        for edges_key, node_key, n in c.edges:
            for i, edge in enumerate(obj.get(edges_key) or ()):
                node(n, edge.get(node_key), (*path, edges_key, i, node_key), level)

    for key, root in sites.roots:
        if isinstance(root, NodeSites):
            node(root, data.get(key), (key,), 1)
        else:
            conn(root, data.get(key), (key,), 1)
    return out


def _error_order(sites: list[_Site], unavailable: Container[str]) -> list[_Site]:
    """The sites in the order the Strawberry path reports their errors: its dataloaders
    resolve level by level (a level: one more database round trip), and within a level a
    missing model's batch at once, then each kind's batches once its features arrive
    (kinds, and the models of a kind, in the order they first appear), keys in order."""
    kinds: dict[tuple[int, str], int] = {}
    models: dict[tuple[int, str, str], int] = {}
    for s in sites:
        kinds.setdefault((s.level, s.sel.kind), len(kinds))
        models.setdefault((s.level, s.sel.kind, s.sel.model), len(models))

    def key(item: tuple[int, _Site]) -> tuple[int, int, int, int, int]:
        i, s = item
        missing = s.sel.model in unavailable
        kind = -1 if missing else kinds[(s.level, s.sel.kind)]
        return (s.level, 0 if missing else 1, kind, models[(s.level, s.sel.kind, s.sel.model)], i)

    return [s for _, s in sorted(enumerate(sites), key=key)]


async def complete(ctx: Context, stmt: Built, data: dict[str, Any]) -> list[GraphQLError]:
    """Fill in the predictions of ``data`` (the statement's response, in place); returns
    the errors of the fields left null, in document order."""
    if stmt.predictions is None:
        return []
    sites = _sites(stmt.predictions, data)
    if not sites:
        return []
    store = store_for(ctx.engine)
    by_kind: dict[str, list[int]] = defaultdict(list)
    for s in sites:
        by_kind[s.sel.kind].append(s.id)
    models: dict[tuple[str, str], list[int]] = defaultdict(list)
    for s in sites:
        models[(s.sel.kind, s.sel.model)].append(s.id)
    unavailable: dict[str, CdmsError] = {}
    wanted: dict[str, list[int]] = defaultdict(list)  # kinds with a model to run
    for (kind, model), ids in models.items():
        try:
            store.get(model)
        except ModelUnavailableError as exc:
            unavailable[model] = exc
            continue
        wanted[kind].extend(ids)
    features: dict[str, Features] = {}
    for kind, ids in wanted.items():
        features[kind] = await ctx.db.run(_loader(kind, list(dict.fromkeys(ids))))
    scored: dict[tuple[str, str], dict[int, Predicted]] = {}
    by_model: dict[str, list[tuple[str, list[int]]]] = defaultdict(list)
    for (kind, model), ids in models.items():
        if model not in unavailable:
            by_model[model].append((kind, ids))
    # ONE run per model, whatever the kinds; the models run side by side in worker threads
    # (onnxruntime releases the GIL), off the event loop
    runs = [
        run_in_threadpool(
            batch.score_groups,
            ctx.engine,
            store.get(model),
            [(kind, features[kind], ids) for kind, ids in groups],
            ctx.actor,
        )
        for model, groups in by_model.items()
    ]
    for (model, groups), results in zip(by_model.items(), await asyncio.gather(*runs), strict=True):
        for (kind, _), result in zip(groups, results, strict=True):
            scored[(kind, model)] = result
    failed: list[_Site] = []
    for s in sites:
        found = scored.get((s.sel.kind, s.sel.model), {}).get(s.id)
        if found is None:
            s.parent[s.sel.key] = None
            failed.append(s)
        else:
            s.parent[s.sel.key] = _render(s.sel.fields, found)
    errors: list[GraphQLError] = []
    for s in _error_order(failed, unavailable):
        error = unavailable.get(s.sel.model) or batch.not_in_warehouse(s.sel.kind, s.id)
        path = [*s.path, s.sel.key]
        errors.append(
            GraphQLError(error.message, nodes=list(s.sel.nodes), path=path, original_error=error)
        )
    return errors


def _loader(kind: str, ids: list[int]) -> Callable[[Connection], Features]:
    return lambda conn: batch.load(conn, kind, ids)


def _render(fields: tuple[Any, ...], p: Predicted) -> dict[str, Any]:
    """The prediction object as the Strawberry types serialize it."""
    out: dict[str, Any] = {}
    for f in fields:
        assert isinstance(f, Sel)
        if f.name == "__typename":
            out[f.key] = f.typename
        elif f.name == "label":
            out[f.key] = p.label
        elif f.name == "probability":
            out[f.key] = p.probability
        elif f.name == "value":
            out[f.key] = p.value
        elif f.name == "model":
            out[f.key] = _model(f.fields, p)
        elif f.name == "probabilities":
            out[f.key] = [_class(f.fields, c, v) for c, v in p.probabilities]
        else:
            raise AssertionError(f.name)  # the planner admits only these fields
    return out


def _model(fields: tuple[Sel, ...], p: Predicted) -> dict[str, Any]:
    values: dict[str, str | int] = {"name": p.model, "version": p.version}
    return {f.key: f.typename if f.name == "__typename" else values[f.name] for f in fields}


def _class(fields: tuple[Sel, ...], label: str, probability: float) -> dict[str, Any]:
    values: dict[str, str | float] = {"label": label, "probability": probability}
    return {f.key: f.typename if f.name == "__typename" else values[f.name] for f in fields}
