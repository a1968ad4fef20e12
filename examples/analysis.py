# %% [markdown]
# # Monthly revenue and return rate by segment, from the cube API, with pandas
#
# A notebook in the percent format (open it in Jupyter with jupytext, or VS Code, or run it
# as a script): `CDMS_URL=http://127.0.0.1:8000 CDMS_TOKEN=... python examples/analysis.py`.
# Needs pandas (the `report` extra).

# %%
from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import pandas as pd

URL = os.environ.get("CDMS_URL", "http://127.0.0.1:8000").rstrip("/") + "/graphql"
TOKEN = os.environ.get("CDMS_TOKEN", "")


def cube(query: str, variables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if TOKEN:
        headers["Authorization"] = f"Bearer {TOKEN}"
    req = urllib.request.Request(
        URL, json.dumps({"query": query, "variables": variables or {}}).encode(), headers
    )
    with urllib.request.urlopen(req, timeout=60) as res:
        body = json.load(res)
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return list(body["data"]["cube"])


# %% [markdown]
# One cube query: revenue and order count per month and segment (the planner answers it
# from `dw.*`, or a rollup); `pd.json_normalize` flattens the nested rows.

# %%
rows = cube("""{ cube(orderBy: [{sales: {orderedAt: ASC}}]) {
  customers { segment }
  sales { orderedAt { month } revenue orderCount } } }""")
sales = pd.json_normalize(rows).rename(
    columns={
        "customers.segment": "segment",
        "sales.orderedAt.month": "month",
        "sales.revenue": "revenue",
        "sales.orderCount": "orders",
    }
)
sales["month"] = pd.to_datetime(sales["month"]).dt.to_period("M")
monthly = sales.pivot_table(index="month", columns="segment", values="revenue", aggfunc="sum")
print(monthly.tail(6).round(0))

# %% [markdown]
# The return rate (units returned / units sold) by segment: a multi-fact measure, computed
# by the cube without fan-out. Compare it with each segment's share of revenue.

# %%
rates = pd.json_normalize(cube("""{ cube { customers { segment } returns { returnRate } } }"""))
rates = rates.rename(columns={"customers.segment": "segment", "returns.returnRate": "return_rate"})
share = sales.groupby("segment")["revenue"].sum() / sales["revenue"].sum()
summary = rates.set_index("segment").join(share.rename("revenue_share"))
print((summary * 100).round(1).rename(columns=lambda c: f"{c} (%)"))
