"""every value the shop accepts fits what the warehouse and the summaries compute from it:
bounds on prices, cost, stock, a line's quantity and an order's subtotal; the sums over
many orders (RFM, the customer and product summaries) widened to numeric(20,2)

Revision ID: 0025_value_bounds
Revises: 0024_source_delete_by_trigger
"""

from db.migrations.sqlfile import run_sql_file

revision = "0025_value_bounds"
down_revision = "0024_source_delete_by_trigger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # first, holding no app table: fact_customer_rfm's precision (catalogue only) and the
    # views reading it, the procedures; then ALTER TABLE app.products (ACCESS EXCLUSIVE,
    # briefly: a scan of the catalogue's products) and, under a short lock_timeout, the two
    # summary views made again
    run_sql_file("0025_value_bounds.sql", locks=("app.products",), mode="ACCESS EXCLUSIVE")


def downgrade() -> None:
    run_sql_file("0025_value_bounds_down.sql", locks=("app.products",), mode="ACCESS EXCLUSIVE")
