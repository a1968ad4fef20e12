"""Who may use what, by field definition (parent type and field, GraphQL names).

- Query roots a customer may use are listed; any other query or subscription root is for
  staff (admin, analyst, service) and any mutation not listed is for admins only, so a new
  root field is closed to customers (and a new mutation to all but admins) until it is
  added here.
- Fields at any depth that need a role: cube queries and the model registry (analysts),
  predictions (analysts and integrators).
- Input fields only some roles may set (a discount: admin and service), argument values a
  role is limited to (a customer may only set its order CANCELLED), and the arguments that
  name a customer (a customer may name only itself).

Row-level security in PostgreSQL stays the floor under all of this.
"""

from __future__ import annotations

from graphql import OperationType

from api.rules import Access

ADMIN = frozenset({"admin"})
STAFF = frozenset({"admin", "analyst", "service"})
ANALYSTS = frozenset({"admin", "analyst"})
PREDICTORS = STAFF
EVERYONE = STAFF | {"customer"}

_CUSTOMER_QUERIES = (
    "customer",
    "customers",
    "order",
    "orders",
    "product",
    "products",
    "supportTicket",
    "supportTickets",
    "returns",
    "feedback",
)

_MUTATIONS = {
    "placeOrder": frozenset({"admin", "service", "customer"}),
    "setOrderStatus": frozenset({"admin", "service", "customer"}),
    "requestReturn": frozenset({"admin", "service", "customer"}),
    "approveReturn": frozenset({"admin", "service"}),
    "rejectReturn": frozenset({"admin", "service"}),
    "openSupportTicket": frozenset({"admin", "service", "customer"}),
    "updateSupportTicket": frozenset({"admin", "service"}),
    "submitFeedback": frozenset({"admin", "customer"}),
    "createCustomer": ADMIN,
    "updateCustomer": ADMIN,
    "createProduct": ADMIN,
    "updateProduct": ADMIN,
}

_RESTRICTED = {
    ("Query", "cube"): ANALYSTS,
    ("Query", "cubeMeta"): ANALYSTS,
    ("Query", "models"): ANALYSTS,
    ("Query", "predictOrderStatus"): PREDICTORS,
    ("Query", "predictSupportStatus"): PREDICTORS,
    ("Query", "predictOrderValue"): PREDICTORS,
    ("Order", "predictedStatus"): PREDICTORS,
    ("Order", "predictedTotal"): PREDICTORS,
    ("SupportTicket", "predictedStatus"): PREDICTORS,
    ("Customer", "expectedOrderValue"): PREDICTORS,
}

ACCESS = Access(
    fields={
        **{("Query", name): EVERYONE for name in _CUSTOMER_QUERIES},
        ("Subscription", "orderStatusChanged"): EVERYONE,
        **{("Mutation", name): roles for name, roles in _MUTATIONS.items()},
        **_RESTRICTED,
    },
    root_default={
        OperationType.QUERY: STAFF,
        OperationType.SUBSCRIPTION: STAFF,
        OperationType.MUTATION: ADMIN,
    },
    inputs={("OrderItemInput", "discount"): frozenset({"admin", "service"})},
    values={("Mutation", "setOrderStatus", "status"): {"customer": frozenset({"CANCELLED"})}},
    owner_keys=frozenset({"customerId"}),
    owner_args=frozenset({("Query", "customer", "id")}),
)
