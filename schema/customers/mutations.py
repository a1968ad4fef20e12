"""Mutations of customers: plain INSERT/UPDATE; constraints give the errors
(unique email → CONFLICT, checks → BAD_USER_INPUT)."""

from __future__ import annotations

import datetime as dt

import strawberry
from strawberry import UNSET

from schema import catalog, tables
from schema.context import Info
from schema.customers.types import Customer, build_customer
from schema.enums import Gender, Segment
from schema.filters import parse_id
from schema.writes import given_values, insert_returning_id, update_returning_id, write_and_read


@strawberry.input
class CreateCustomerInput:
    email: str
    first_name: str
    last_name: str
    country: str
    region: str
    city: str
    segment: Segment = Segment.CONSUMER
    gender: Gender | None = None
    birth_date: dt.date | None = None


@strawberry.input(description="Only the fields given are changed.")
class UpdateCustomerInput:
    email: str | None = UNSET
    first_name: str | None = UNSET
    last_name: str | None = UNSET
    country: str | None = UNSET
    region: str | None = UNSET
    city: str | None = UNSET
    segment: Segment | None = UNSET
    gender: Gender | None = UNSET
    birth_date: dt.date | None = UNSET


@strawberry.type
class CustomerMutations:
    @strawberry.mutation
    async def create_customer(self, info: Info, input: CreateCustomerInput) -> Customer:
        write = insert_returning_id(tables.customers, given_values(input))
        return await write_and_read(info, write, catalog.CUSTOMER, build_customer)

    @strawberry.mutation
    async def update_customer(
        self, info: Info, id: strawberry.ID, input: UpdateCustomerInput
    ) -> Customer:
        write = update_returning_id(tables.customers, "customer", parse_id(id), given_values(input))
        return await write_and_read(info, write, catalog.CUSTOMER, build_customer)
