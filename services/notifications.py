"""Buyer-facing Telegram message texts, all in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING

from services.money import normalized

if TYPE_CHECKING:
    from services.orders import OrderRow


def _amount(order: OrderRow) -> str:
    return f"{normalized(order.amount)} {order.currency}"


def _granted(order: OrderRow, credit_unit: str) -> str:
    parts = []
    if order.credit:
        parts.append(f"{order.credit} {credit_unit} added to your balance")
    if order.subscription_plan:
        parts.append(f"subscription “{order.subscription_plan}” extended by {order.subscription_days} days")
    return ("\n" + "; ".join(parts) + ".") if parts else ""


def paid_text(order: OrderRow, credit_unit: str) -> str:
    return f"✅ Payment received: {_amount(order)} for order {order.order_id}.{_granted(order, credit_unit)}"


def refunded_text(order: OrderRow, credit_unit: str) -> str:
    taken_back = f"\n{order.credit} {credit_unit} deducted from your balance." if order.credit else ""
    return f"↩️ Order {order.order_id} was refunded: {_amount(order)}.{taken_back}"


def subscription_link_text(plan: str, url: str) -> str:
    return (f"🔑 Your subscription link for “{plan}” was renewed:\n{url}\n"
            "Re-import it in your VPN app: the previous configuration stops working.")


def subscription_ready_text(plan: str, url: str) -> str:
    return f"🔑 Your subscription “{plan}” is active. Import this link in your VPN app:\n{url}"


def renewed_text(order: OrderRow, credit_unit: str) -> str:
    return f"🔄 Subscription renewed: {_amount(order)} for order {order.order_id}.{_granted(order, credit_unit)}"


def renewal_refunded_text(order: OrderRow, credit_unit: str) -> str:
    taken_back = [f"{order.credit} {credit_unit} deducted from your balance"] if order.credit else []
    if order.subscription_plan:
        taken_back.append(f"subscription “{order.subscription_plan}” shortened by {order.subscription_days} days")
    details = ("\n" + "; ".join(taken_back) + ".") if taken_back else ""
    return f"↩️ A renewal of order {order.order_id} was refunded: {_amount(order)}.{details}"


def renewal_cancelled_text(order: OrderRow) -> str:
    return (f"⏹ The subscription of order {order.order_id} will not renew; what you paid for runs to its end.")


def subscription_expiry_text(plan: str, hours_left: int, renew_url: str) -> str:
    """The panel's reminder: expires in so many hours (hours_left > 0), or has expired."""
    if hours_left > 0:
        when = "1 hour" if hours_left == 1 else f"{hours_left} hours"
        return f"⏳ Your subscription “{plan}” expires in {when}. Renew it here:\n{renew_url}"
    return f"⌛ Your subscription “{plan}” has expired. Renew it here:\n{renew_url}"


STATUS_TEXTS = {"paid": paid_text, "refunded": refunded_text}
