"""The only list of VPN panels, chosen by PANEL_TYPE."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from services.errors import NotConfigured
from services.panels.base import SubscriptionPanel
from services.panels.marzban import MarzbanPanel
from services.panels.remnawave import RemnawavePanel
from services.panels.xui import XuiPanel
from webhook_config import Settings

if TYPE_CHECKING:
    from services.openapi import Operation

PANELS: dict[str, Callable[[Settings], SubscriptionPanel]] = {
    MarzbanPanel.name: MarzbanPanel,
    RemnawavePanel.name: RemnawavePanel,
    XuiPanel.name: XuiPanel,
}


def panel_for(settings: Settings) -> SubscriptionPanel:
    """The configured panel; NotConfigured (503) while PANEL_TYPE is unset."""
    factory = PANELS.get(settings.panel_type)
    if factory is None:
        raise NotConfigured("No subscription panel is configured (PANEL_TYPE).")
    return factory(settings)


def operations() -> dict[tuple[str, str], Operation]:
    """The OpenAPI description of the panels' own routes (the Remnawave webhook)."""
    # Imported on use, as the providers' plugins are: the webhook module describes itself with
    # services.openapi and reaches the purchases through sync.py, which imports this registry.
    from services.panels import remnawave_webhook
    return dict(remnawave_webhook.OPERATIONS)
