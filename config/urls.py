from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.views import api_root
from inbox.api import notify
from orders.api import OrderCollectionApi, OrderDetailApi
from outbox.api import EventCollectionApi, EventReplayApi
from payments.api import (
    CashierApi,
    OrderCancelApi,
    PaycodeCreateApi,
    PaymentByChannelTradeNoApi,
    PaymentClientReportApi,
    PaymentCloseApi,
    PaymentCollectionApi,
    PaymentDetailApi,
)
from refunds.api import RefundCollectionApi, RefundDetailApi

api_v1 = [
    path("", api_root, name="root"),
    path("orders", OrderCollectionApi.as_view(), name="orders"),
    path("orders/<str:order_no>", OrderDetailApi.as_view(), name="order-detail"),
    path("orders/<str:order_no>/cancel", OrderCancelApi.as_view(), name="order-cancel"),
    path("cashier", CashierApi.as_view(), name="cashier"),
    path("payments", PaymentCollectionApi.as_view(), name="payments"),
    path("payments/paycode", PaycodeCreateApi.as_view(), name="payments-paycode"),
    path(
        "payments/by-channel-trade-no/<str:channel_trade_no>",
        PaymentByChannelTradeNoApi.as_view(),
        name="payment-by-channel-trade-no",
    ),
    path("payments/<str:payment_no>", PaymentDetailApi.as_view(), name="payment-detail"),
    path("payments/<str:payment_no>/client-report", PaymentClientReportApi.as_view(), name="payment-client-report"),
    path("payments/<str:payment_no>/close", PaymentCloseApi.as_view(), name="payment-close"),
    path("refunds", RefundCollectionApi.as_view(), name="refunds"),
    path("refunds/<str:refund_no>", RefundDetailApi.as_view(), name="refund-detail"),
    path("events", EventCollectionApi.as_view(), name="events"),
    path("events/replay", EventReplayApi.as_view(), name="events-replay"),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="v1:schema"), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="v1:schema"), name="redoc"),
]

callbacks = [path("<str:channel>/<int:account_id>", notify, name="notify")]

# Hottest first: Django tries the prefixes in order, and every miss is recorded on the way.
urlpatterns = [
    path("callbacks/", include((callbacks, "callbacks"))),
    path("api/v1/", include((api_v1, "v1"))),
    path("admin/", admin.site.urls),
]

handler400 = "paycore.api.api_bad_request"
handler403 = "paycore.api.api_forbidden"
handler404 = "paycore.api.api_not_found"
handler500 = "paycore.api.api_server_error"
