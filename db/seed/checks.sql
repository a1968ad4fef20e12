-- Invariants the seeded data must satisfy. The seed loads with user triggers (and, as a
-- superuser, foreign-key triggers) switched off, so it proves afterwards, in SQL, what the
-- triggers and constraints would have enforced. Each block is one check: a query that
-- returns the violating rows; the seed fails (and rolls back) unless every one is empty.
-- Each block starts with a "check" comment line that names it.

-- check: order totals match their lines
SELECT o.id
FROM app.orders o
JOIN app.order_items i ON i.order_id = o.id
GROUP BY o.id
HAVING o.item_count <> sum(i.quantity)
    OR o.subtotal <> sum(i.quantity * i.unit_price)
    OR o.discount_total <> sum(i.discount)
    OR o.total_amount <> o.subtotal - o.discount_total
UNION ALL
SELECT o.id
FROM app.orders o
WHERE NOT EXISTS (SELECT 1 FROM app.order_items i WHERE i.order_id = o.id);

-- check: stock is never negative
SELECT id FROM app.products WHERE stock < 0;

-- check: order timestamps are ordered
SELECT id
FROM app.orders
WHERE paid_at < ordered_at
   OR shipped_at < paid_at
   OR delivered_at < shipped_at
   OR cancelled_at < coalesce(paid_at, ordered_at)
   OR returned_at < delivered_at
   OR updated_at < greatest(ordered_at, paid_at, shipped_at, delivered_at, cancelled_at, returned_at);

-- check: order status matches its timestamps
SELECT id
FROM app.orders
WHERE NOT CASE status
    WHEN 'pending'   THEN paid_at IS NULL AND shipped_at IS NULL AND cancelled_at IS NULL
    WHEN 'paid'      THEN paid_at IS NOT NULL AND shipped_at IS NULL AND cancelled_at IS NULL
    WHEN 'shipped'   THEN paid_at IS NOT NULL AND shipped_at IS NOT NULL
                          AND delivered_at IS NULL AND cancelled_at IS NULL
    WHEN 'delivered' THEN delivered_at IS NOT NULL AND returned_at IS NULL AND cancelled_at IS NULL
    WHEN 'cancelled' THEN cancelled_at IS NOT NULL AND shipped_at IS NULL
    WHEN 'returned'  THEN delivered_at IS NOT NULL AND returned_at IS NOT NULL
    ELSE false
END
   OR (status <> 'returned' AND returned_at IS NOT NULL)
   OR (status NOT IN ('delivered', 'returned') AND delivered_at IS NOT NULL);

-- check: each history step happens at the order's timestamp for it, from its one legal predecessor
-- (pending from NULL at ordered_at; cancelled from paid when the order was paid, else from
-- pending). With the next check and the status check above, this makes the history the
-- chain NULL -> pending -> ... -> current status, without sorting it.
SELECT h.id
FROM app.order_status_history h
JOIN app.orders o ON o.id = h.order_id
WHERE h.changed_at IS DISTINCT FROM CASE h.to_status
        WHEN 'pending'   THEN o.ordered_at
        WHEN 'paid'      THEN o.paid_at
        WHEN 'shipped'   THEN o.shipped_at
        WHEN 'delivered' THEN o.delivered_at
        WHEN 'cancelled' THEN o.cancelled_at
        WHEN 'returned'  THEN o.returned_at
      END
   OR h.from_status IS DISTINCT FROM CASE h.to_status
        WHEN 'paid'      THEN 'pending'
        WHEN 'shipped'   THEN 'paid'
        WHEN 'delivered' THEN 'shipped'
        WHEN 'returned'  THEN 'delivered'
        WHEN 'cancelled' THEN CASE WHEN o.paid_at IS NULL THEN 'pending' ELSE 'paid' END
      END;

-- check: history has exactly one step per status the order reached
-- (n steps whose status bits add up to a mask with n bits set are n distinct statuses)
SELECT o.id
FROM app.orders o
LEFT JOIN (
    SELECT order_id,
           count(*) AS steps,
           sum(CASE to_status WHEN 'pending' THEN 1 WHEN 'paid' THEN 2 WHEN 'shipped' THEN 4
                              WHEN 'delivered' THEN 8 WHEN 'cancelled' THEN 16
                              WHEN 'returned' THEN 32 END) AS mask
    FROM app.order_status_history
    GROUP BY order_id
) h ON h.order_id = o.id
WHERE h.steps IS DISTINCT FROM
        1 + num_nonnulls(o.paid_at, o.shipped_at, o.delivered_at, o.cancelled_at, o.returned_at)
   OR h.mask IS DISTINCT FROM 1
        + CASE WHEN o.paid_at      IS NULL THEN 0 ELSE 2  END
        + CASE WHEN o.shipped_at   IS NULL THEN 0 ELSE 4  END
        + CASE WHEN o.delivered_at IS NULL THEN 0 ELSE 8  END
        + CASE WHEN o.cancelled_at IS NULL THEN 0 ELSE 16 END
        + CASE WHEN o.returned_at  IS NULL THEN 0 ELSE 32 END;

-- check: no line is returned more often than it was bought
SELECT r.order_id, r.line_no
FROM app.returns r
JOIN app.order_items i USING (order_id, line_no)
WHERE r.status IN ('requested', 'approved')
GROUP BY r.order_id, r.line_no, i.quantity
HAVING sum(r.quantity) > i.quantity;

-- check: returns only on delivered or returned orders, after delivery, by the buyer
SELECT r.id
FROM app.returns r
JOIN app.orders o ON o.id = r.order_id
WHERE o.status NOT IN ('delivered', 'returned')
   OR r.requested_at < o.delivered_at
   OR r.decided_at < r.requested_at
   OR r.customer_id <> o.customer_id;

-- check: approved refunds are the line's net price pro rata
SELECT r.id
FROM app.returns r
JOIN app.order_items i USING (order_id, line_no)
WHERE r.status = 'approved'
  AND r.refund_amount <> round(i.line_total * r.quantity / i.quantity, 2);

-- check: an order is 'returned' exactly when every unit came back approved
SELECT o.id
FROM app.orders o
LEFT JOIN (
    SELECT order_id, sum(quantity) AS units, max(decided_at) AS last_decided
    FROM app.returns
    WHERE status = 'approved'
    GROUP BY order_id
) a ON a.order_id = o.id
WHERE (o.status = 'returned') <> (coalesce(a.units, 0) = o.item_count)
   OR (o.status = 'returned' AND o.returned_at <> a.last_decided);

-- check: ticket status matches its timestamps
SELECT id
FROM app.support_tickets
WHERE (status IN ('resolved', 'closed') AND (resolved_at IS NULL OR resolved_at < opened_at))
   OR (status IN ('open', 'in_progress') AND resolved_at IS NOT NULL)
   OR (status = 'closed') <> (closed_at IS NOT NULL)
   OR closed_at < resolved_at
   OR (satisfaction IS NOT NULL AND status NOT IN ('resolved', 'closed'));

-- check: a ticket's order belongs to the ticket's customer
SELECT t.id
FROM app.support_tickets t
JOIN app.orders o ON o.id = t.order_id
WHERE o.customer_id <> t.customer_id;

-- check: feedback is about the customer's own delivered order and one of its products
SELECT f.id
FROM app.feedback f
JOIN app.orders o ON o.id = f.order_id
WHERE o.customer_id <> f.customer_id
   OR o.delivered_at IS NULL
   OR f.created_at < o.delivered_at
   OR (f.product_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM app.order_items i WHERE i.order_id = f.order_id AND i.product_id = f.product_id));

-- check: customers sign up before their first order
SELECT c.id
FROM app.customers c
JOIN (SELECT customer_id, min(ordered_at) AS first_at FROM app.orders GROUP BY customer_id) o
  ON o.customer_id = c.id
WHERE c.signup_at > o.first_at;

-- check: every reference points at an existing row
SELECT 'orders.customer_id' AS ref, o.id FROM app.orders o
 WHERE NOT EXISTS (SELECT 1 FROM app.customers c WHERE c.id = o.customer_id)
UNION ALL
SELECT 'order_items.order_id', i.order_id FROM app.order_items i
 WHERE NOT EXISTS (SELECT 1 FROM app.orders o WHERE o.id = i.order_id)
UNION ALL
SELECT 'order_items.product_id', i.order_id FROM app.order_items i
 WHERE NOT EXISTS (SELECT 1 FROM app.products p WHERE p.id = i.product_id)
UNION ALL
SELECT 'order_status_history.order_id', h.id FROM app.order_status_history h
 WHERE NOT EXISTS (SELECT 1 FROM app.orders o WHERE o.id = h.order_id)
UNION ALL
SELECT 'feedback.customer_id', f.id FROM app.feedback f
 WHERE NOT EXISTS (SELECT 1 FROM app.customers c WHERE c.id = f.customer_id)
UNION ALL
SELECT 'feedback.order_id', f.id FROM app.feedback f
 WHERE f.order_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM app.orders o WHERE o.id = f.order_id)
UNION ALL
SELECT 'feedback.product_id', f.id FROM app.feedback f
 WHERE f.product_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM app.products p WHERE p.id = f.product_id)
UNION ALL
SELECT 'returns.line', r.id FROM app.returns r
 WHERE NOT EXISTS (SELECT 1 FROM app.order_items i WHERE i.order_id = r.order_id AND i.line_no = r.line_no)
UNION ALL
SELECT 'returns.customer_id', r.id FROM app.returns r
 WHERE NOT EXISTS (SELECT 1 FROM app.customers c WHERE c.id = r.customer_id)
UNION ALL
SELECT 'support_tickets.customer_id', t.id FROM app.support_tickets t
 WHERE NOT EXISTS (SELECT 1 FROM app.customers c WHERE c.id = t.customer_id)
UNION ALL
SELECT 'support_tickets.order_id', t.id FROM app.support_tickets t
 WHERE t.order_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM app.orders o WHERE o.id = t.order_id);
