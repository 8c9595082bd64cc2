"""VPN panels: one module per panel behind the interface of base.py, listed in registry.py."""
