"""Who may use what, read from the schema's own declarations (by type and field):

- a field's ``metadata["roles"]``: the roots that need a role (cube, models, what-if
  predictions), each mutation, the subscription, input fields only some roles may set
  (``OrderItemInput.discount``); ``metadata["values"]``: argument values a role is limited
  to (a customer may only set its order ``CANCELLED``);
- the catalog (schema/catalog.py): the entities' query roots are open to customers (row-level
  security decides their rows), prediction fields need a role.

Defaults close what is not declared: a query or subscription root without roles is for
staff (admin, analyst, service), a mutation without roles for admins only. Arguments and
input fields named ``customerId``, and ``customer(id:)``, name a customer: a customer may
name only itself. Row-level security in PostgreSQL stays the floor under all of this.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLInputObjectType, GraphQLObjectType, OperationType

from api.rules import Access

ADMIN = frozenset({"admin"})
STAFF = frozenset({"admin", "analyst", "service"})
EVERYONE = STAFF | {"customer"}


def access_of(schema: Any) -> Access:
    """The access table of a Strawberry schema built from schema/ (schema.app.schema)."""
    from schema.app import graphql_schema
    from schema.catalog import FIELD_ROLES, ROOTS

    fields: dict[tuple[str, str], frozenset[str]] = {
        **{("Query", name): EVERYONE for name in ROOTS},
        **FIELD_ROLES,
    }
    inputs: dict[tuple[str, str], frozenset[str]] = {}
    values: dict[tuple[str, str, str], dict[str, frozenset[Any]]] = {}
    for name, gtype in graphql_schema().type_map.items():
        if name.startswith("__") or not isinstance(
            gtype, GraphQLObjectType | GraphQLInputObjectType
        ):
            continue
        definition = schema.get_type_by_name(name)
        for f in getattr(definition, "fields", ()):
            metadata = getattr(f, "metadata", None) or {}
            graphql_name = schema.config.name_converter.get_graphql_name(f)
            roles = metadata.get("roles")
            if roles is not None:
                table = inputs if isinstance(gtype, GraphQLInputObjectType) else fields
                table[(name, graphql_name)] = frozenset(roles)
            for arg, by_role in (metadata.get("values") or {}).items():
                values[(name, graphql_name, arg)] = {r: frozenset(v) for r, v in by_role.items()}
    return Access(
        fields=fields,
        root_default={
            OperationType.QUERY: STAFF,
            OperationType.SUBSCRIPTION: STAFF,
            OperationType.MUTATION: ADMIN,
        },
        inputs=inputs,
        values=values,
        owner_keys=frozenset({"customerId"}),
        owner_args=frozenset({("Query", "customer", "id")}),
    )
