"""The order state machine. A CLOSED order stays closed: money a channel reports for it later is
recorded on the payment as a LATE share and refunded, never used to revive the order."""

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
        S.CLOSED: set(),
    },
    event=OrderEvent,
)
order_move = ORDER_TRANSITIONS.move
