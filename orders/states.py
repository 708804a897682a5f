"""The order state machine. CLOSED -> PAID exists because a channel may report a payment after
the order was closed: the money was taken, so the order is paid (and refunded if unwanted)."""

from orders.models import Order, OrderEvent
from paycore.statemachine import TransitionTable

S = Order.Status

ORDER_TRANSITIONS = TransitionTable(
    "order",
    {
        S.PENDING_PAYMENT: {S.PAID, S.CLOSED},
        S.PAID: {S.PARTIALLY_REFUNDED, S.REFUNDED},
        S.PARTIALLY_REFUNDED: {S.REFUNDED},
        S.REFUNDED: set(),
        S.CLOSED: {S.PAID},
    },
    event=OrderEvent,
)
order_move = ORDER_TRANSITIONS.move
