from django.contrib import admin

from orders.models import Merchant, Order, OrderEvent, OrderItem
from orders.services import merchant_set_status
from paycore.admin_tools import ReadOnlyAdmin, ReadOnlyInline, mask, money_display, run_service_action


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["code", "name"]
    fields = ["code", "name", "status", "notify_url", "webhook_secret"]
    readonly_fields = ["status"]
    actions = ["suspend", "activate"]

    def get_form(self, request, obj=None, **kwargs):  # the secret is write-only: never rendered back
        form = super().get_form(request, obj, **kwargs)
        from django import forms

        form.base_fields["webhook_secret"].widget = forms.PasswordInput(render_value=False)
        form.base_fields["webhook_secret"].required = False
        return form

    def save_model(self, request, obj, form, change):
        if change and not form.cleaned_data.get("webhook_secret"):
            obj.webhook_secret = Merchant.objects.get(pk=obj.pk).webhook_secret
        super().save_model(request, obj, form, change)

    @admin.action(description="Suspend merchants")
    def suspend(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            "suspended",
            lambda m, actor: merchant_set_status(merchant_id=m.pk, status=Merchant.Status.SUSPENDED, actor=actor),
        )

    @admin.action(description="Activate merchants")
    def activate(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            "activated",
            lambda m, actor: merchant_set_status(merchant_id=m.pk, status=Merchant.Status.ACTIVE, actor=actor),
        )


class OrderEventInline(ReadOnlyInline):
    model = OrderEvent
    fields = ["created_at", "from_status", "to_status", "source", "actor", "evidence"]


class OrderItemInline(ReadOnlyInline):
    model = OrderItem
    fields = ["name", "price", "quantity"]
    price = money_display("unit_price", "order__currency", "unit price")


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = ["order_no", "merchant", "merchant_order_no", "shown_amount", "status", "expires_at"]
    list_filter = ["status", "currency", "merchant"]
    list_select_related = ["merchant"]
    search_fields = ["order_no", "merchant_order_no", "customer_ref"]
    readonly_fields = ["shown_amount", "masked_phone", "masked_address"]
    exclude = ["amount", "phone", "shipping_address"]
    shown_amount = money_display()
    inlines = [OrderItemInline, OrderEventInline]

    @admin.display(description="phone")
    def masked_phone(self, obj):
        return mask(obj.phone)

    @admin.display(description="shipping address")
    def masked_address(self, obj):
        return mask(obj.shipping_address, keep=6)


@admin.register(OrderItem)
class OrderItemAdmin(ReadOnlyAdmin):
    list_display = ["order", "name", "price", "quantity"]
    list_select_related = ["order"]
    readonly_fields = ["price"]
    exclude = ["unit_price"]
    price = money_display("unit_price", "order__currency", "unit price")
    search_fields = ["order__order_no", "order__merchant_order_no", "name"]


@admin.register(OrderEvent)
class OrderEventAdmin(ReadOnlyAdmin):
    list_display = ["order", "from_status", "to_status", "source", "actor", "created_at"]
    list_filter = ["source", "to_status"]
    list_select_related = ["order"]
    search_fields = ["order__order_no"]
