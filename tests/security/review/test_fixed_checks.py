"""What the pipeline decides once per parsed document (api/pipeline.py, api/rules.py) must
still be decided per principal: the roles once per (operation, role), the arguments that
hold no variable coerced once but checked against every caller's role and customer.

The same text sent by one principal, then another: the second must be refused as if it
were the first to send it (the caches are per document, not per principal)."""

from __future__ import annotations

import pytest
from graphql import OperationType
from sqlalchemy.engine import Engine

from api.auth import Principal
from api.pipeline import Operation, Pipeline, Policy, Refusal
from schema.app import graphql_schema
from tests.security.conftest import Parties

KINDS = (OperationType.QUERY, OperationType.MUTATION)


def _customer(cid: int) -> Principal:
    return Principal("customer", cid, f"customer:{cid}", f"customer:{cid}")


def _staff(role: str) -> Principal:
    return Principal(role, None, role, role)


def _refused(pipeline: Pipeline, query: str, who: Principal) -> str:
    with pytest.raises(Refusal) as caught:
        pipeline.check(query, Operation(query), who, KINDS)
    return caught.value.code


@pytest.mark.parametrize("production", [False, True])
def test_a_constant_customer_id_is_checked_for_each_customer(
    sec_engine: Engine, parties: Parties, production: bool
) -> None:
    pipeline = Pipeline(graphql_schema(), sec_engine, Policy(production=production))
    for query in (
        f'query {{ customer(id: "{parties.a}") {{ id }} }}',
        f'mutation {{ submitFeedback(input: {{customerId: "{parties.a}", rating: 1}}) {{ id }} }}',
    ):
        op = Operation(query)
        pipeline.check(query, op, _customer(parties.a), KINDS)  # its own: coerced, cached
        pipeline.check(query, op, _staff("admin"), KINDS)
        assert _refused(pipeline, query, _customer(parties.b)) == "FORBIDDEN", query
        pipeline.check(query, op, _customer(parties.a), KINDS)


def test_a_constant_value_allowed_to_staff_is_refused_to_a_customer(
    sec_engine: Engine, parties: Parties
) -> None:
    pipeline = Pipeline(graphql_schema(), sec_engine, Policy(production=True))
    order = parties.a_orders[0]
    query = f'mutation {{ setOrderStatus(orderId: "{order}", status: SHIPPED) {{ id }} }}'
    pipeline.check(query, Operation(query), _staff("admin"), KINDS)  # checked, not run
    assert _refused(pipeline, query, _customer(parties.a)) == "FORBIDDEN"
    cancel = query.replace("SHIPPED", "CANCELLED")
    pipeline.check(cancel, Operation(cancel), _customer(parties.a), KINDS)


def test_roles_decided_for_one_role_are_decided_again_for_another(
    sec_engine: Engine, parties: Parties
) -> None:
    pipeline = Pipeline(graphql_schema(), sec_engine, Policy(production=True))
    staff_only = (
        f'query Who {{ order(id: "{parties.a_orders[0]}") {{ statusHistory {{ changedBy }} }} }}'
        " query Mine { __typename }"
    )
    for name in ("Who", "Mine"):  # both operations of the document decided as admin
        pipeline.check(
            staff_only, Operation(staff_only, operation_name=name), _staff("admin"), KINDS
        )
    with pytest.raises(Refusal) as caught:
        pipeline.check(
            staff_only, Operation(staff_only, operation_name="Who"), _customer(parties.a), KINDS
        )
    assert caught.value.code == "FORBIDDEN"
    pipeline.check(
        staff_only, Operation(staff_only, operation_name="Mine"), _customer(parties.a), KINDS
    )
    introspect = "query { __schema { queryType { name } } }"
    pipeline.check(introspect, Operation(introspect), _staff("admin"), KINDS)
    assert _refused(pipeline, introspect, _staff("analyst")) == "FORBIDDEN"
