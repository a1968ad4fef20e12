"""Mutations of products: plain INSERT/UPDATE; constraints give the errors
(unique sku → CONFLICT, checks such as a negative price → BAD_USER_INPUT)."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry import UNSET

from schema import catalog, tables
from schema.context import Info
from schema.filters import parse_id
from schema.products.types import Product, build_product
from schema.writes import given_values, insert_returning_id, update_returning_id, write_and_read


@strawberry.input
class CreateProductInput:
    sku: str
    name: str
    category: str
    subcategory: str
    brand: str
    unit_price: Decimal
    cost: Decimal
    stock: int = 0


@strawberry.input(description="Only the fields given are changed.")
class UpdateProductInput:
    name: str | None = UNSET
    category: str | None = UNSET
    subcategory: str | None = UNSET
    brand: str | None = UNSET
    unit_price: Decimal | None = UNSET
    cost: Decimal | None = UNSET
    stock: int | None = UNSET


@strawberry.type
class ProductMutations:
    @strawberry.mutation
    async def create_product(self, info: Info, input: CreateProductInput) -> Product:
        write = insert_returning_id(tables.products, given_values(input))
        return await write_and_read(info, write, catalog.PRODUCT, build_product)

    @strawberry.mutation
    async def update_product(
        self, info: Info, id: strawberry.ID, input: UpdateProductInput
    ) -> Product:
        write = update_returning_id(tables.products, "product", parse_id(id), given_values(input))
        return await write_and_read(info, write, catalog.PRODUCT, build_product)
