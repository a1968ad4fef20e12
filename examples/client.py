"""A small cdms client: one function that POSTs GraphQL, then three questions.

    CDMS_URL=http://127.0.0.1:8000 CDMS_TOKEN=<api key> python examples/client.py

Standard library only. CDMS_TOKEN may be left unset for a server started with
CDMS_DEMO_OPEN=1.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from typing import Any

URL = os.environ.get("CDMS_URL", "http://127.0.0.1:8000").rstrip("/") + "/graphql"
TOKEN = os.environ.get("CDMS_TOKEN", "")


class GraphQLError(Exception):
    pass


def gql(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data of one GraphQL operation; GraphQLError with the codes when it fails."""
    headers = {"Content-Type": "application/json"}
    if TOKEN:
        headers["Authorization"] = f"Bearer {TOKEN}"
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(URL, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:  # 4xx: the body still says why
        answer = json.load(exc)
    if answer.get("errors"):
        codes = ", ".join(
            f"{e.get('extensions', {}).get('code')}: {e['message']}" for e in answer["errors"]
        )
        raise GraphQLError(codes)
    return dict(answer["data"])


def main() -> None:
    top = gql("""{ customers(first: 3, orderBy: [{signupAt: DESC}]) { totalCount
        edges { node { id firstName country summary { orderCount lifetimeValue } } } } }""")
    print(f"{top['customers']['totalCount']} customers; the 3 newest:")
    for edge in top["customers"]["edges"]:
        c = edge["node"]
        print(
            f"  #{c['id']} {c['firstName']} ({c['country']}): "
            f"{c['summary']['orderCount']} orders, {c['summary']['lifetimeValue']} spent"
        )

    months = gql("""{ cube(orderBy: [{sales: {orderedAt: DESC}}], limit: 3) {
        sales { orderedAt { month } revenue priorYear: revenue(compare: PRIOR_YEAR) } } }""")
    print("revenue of the last 3 months (and a year earlier):")
    for row in months["cube"]:
        s = row["sales"]
        print(f"  {s['orderedAt']['month'][:7]}: {s['revenue']:,.0f} ({s['priorYear'] or 0:,.0f})")

    try:
        gql('{ order(id: 0) { id } customer(id: "x") { id } }')
    except GraphQLError as exc:
        print(f"a bad id is refused with a code: {exc}")


if __name__ == "__main__":
    try:
        main()
    except (GraphQLError, urllib.error.URLError) as exc:
        sys.exit(f"cdms example failed: {exc}")
