"""The free text that had to be "not blank" (a ticket's subject, a customer's first and last
name, a product's name) holds at least one visible character, for every writer: a value of
whitespace, control or format characters only (tab, line breaks, U+00A0, U+200B, U+3000,
U+202E...) looks empty wherever it is shown (hostile probe 22, L2). The other required text
(a customer's country, region and city; a product's category, subcategory and brand) may be
empty, as before: a country without regions, unbranded goods (hostile probe 23, L2)."""

from __future__ import annotations

import pytest

from db.errors import BadUserInputError, camel
from tests.db.shop import Conn, new_customer, new_product, one, refused
from tests.db.test_tickets import open_ticket, tickets_of

INVISIBLE = [
    "\t",
    "\n\n",
    "\r\n",
    "\u00a0",
    "\u200b",
    "\u3000\u00a0",
    "\u202e",
    "\u2066\u2069",
    "\ufeff",
    "\u00ad",
    "\u2800",
    "\u3164",
    "\U000e0041",
    " \u2028 \u2029 ",
    "\x1b\x07",
]
VISIBLE = ["x", " \u200bx\u3000", "ключ", "運", "é", "\u202eabc", "-", "0"]


@pytest.mark.parametrize("subject", INVISIBLE)
def test_a_subject_without_a_visible_character_is_blank(pg: Conn, subject: str) -> None:
    customer = new_customer(pg)
    pg.commit()
    with refused(pg, BadUserInputError) as info:
        open_ticket(pg, customer, subject=subject)
    assert info.value.message == "subject must not be blank"
    assert (info.value.fields["field"], info.value.fields["reason"]) == ("subject", "blank")
    assert tickets_of(pg, customer) == 0


def test_a_subject_with_a_visible_character_is_taken(pg: Conn) -> None:
    customer = new_customer(pg)
    for subject in VISIBLE:
        open_ticket(pg, customer, subject=subject)
    pg.commit()
    assert tickets_of(pg, customer) == len(VISIBLE)


CUSTOMER_TEXT = ["first_name", "last_name"]
PRODUCT_TEXT = ["name"]
# required (NOT NULL) and at most 200 characters, nothing more (0019)
CUSTOMER_PLACE = ["country", "region", "city"]
PRODUCT_GROUPING = ["category", "subcategory", "brand"]
MAY_BE_EMPTY = ["", " ", "\t", "\u200b", "\u00a0"]


@pytest.mark.parametrize("column", CUSTOMER_TEXT)
def test_a_customers_required_text_needs_a_visible_character(pg: Conn, column: str) -> None:
    for value in ("", "\u200b\u3000", "\t\n"):
        with refused(pg, BadUserInputError) as info:
            new_customer(pg, **{column: value})
        assert info.value.fields["field"] == camel(column), info.value.fields
    customer = new_customer(pg)
    pg.commit()
    with refused(pg, BadUserInputError):
        pg.execute(
            f"UPDATE app.customers SET {column} = %s WHERE id = %s", ("\u00a0\u202e", customer)
        )
    new_customer(pg, **{column: "\u200bÅ\u3000"})
    pg.rollback()


@pytest.mark.parametrize("column", PRODUCT_TEXT)
def test_a_products_required_text_needs_a_visible_character(pg: Conn, column: str) -> None:
    product, _ = new_product(pg)
    pg.commit()
    for value in ("", "\u200b\u3000", "\t\n"):
        with refused(pg, BadUserInputError) as info:
            pg.execute(f"UPDATE app.products SET {column} = %s WHERE id = %s", (value, product))
        assert info.value.fields["field"] == column, info.value.fields
    pg.execute(f"UPDATE app.products SET {column} = %s WHERE id = %s", ("\u200bÅ", product))
    assert one(pg, f"SELECT {column} FROM app.products WHERE id = %s", (product,)) == "\u200bÅ"
    pg.rollback()


@pytest.mark.parametrize("column", CUSTOMER_PLACE)
def test_a_customers_place_may_be_empty_as_before(pg: Conn, column: str) -> None:
    """Singapore and Monaco have no regions: "" was taken before 0038 and still is, and is
    kept as written (no "(blank)" put in its place)."""
    for value in MAY_BE_EMPTY:
        customer = new_customer(pg, **{column: value})
        got = one(pg, f"SELECT {column} FROM app.customers WHERE id = %s", (customer,))
        assert got == value
    customer = new_customer(pg)
    pg.execute(f"UPDATE app.customers SET {column} = '' WHERE id = %s", (customer,))
    with refused(pg, BadUserInputError) as info:  # the length limit stays
        pg.execute(f"UPDATE app.customers SET {column} = %s WHERE id = %s", ("x" * 201, customer))
    assert info.value.fields["field"] == camel(column), info.value.fields
    pg.rollback()


@pytest.mark.parametrize("column", PRODUCT_GROUPING)
def test_a_products_grouping_may_be_empty_as_before(pg: Conn, column: str) -> None:
    """Unbranded goods have no brand: "" was taken before 0038 and still is."""
    product, _ = new_product(pg)
    for value in MAY_BE_EMPTY:
        pg.execute(f"UPDATE app.products SET {column} = %s WHERE id = %s", (value, product))
        assert one(pg, f"SELECT {column} FROM app.products WHERE id = %s", (product,)) == value
    with refused(pg, BadUserInputError) as info:  # the length limit stays
        pg.execute(f"UPDATE app.products SET {column} = %s WHERE id = %s", ("x" * 201, product))
    assert info.value.fields["field"] == column, info.value.fields
    pg.rollback()
