"""The shared public datasets (../shared/data) as the evaluation tools and tests read them.

One place for where they live and for the mapping from bitext's categories to a five-skill policy, so a
benchmark and a test never disagree about what they measure.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA = Path(os.environ.get("SWITCHBOARD_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SKILLS = {
    "billing": ("invoice", "refund", "charged", "payment"),
    "orders": ("order", "cancel"),
    "shipping": ("delivery", "shipping", "address"),
    "account": ("account", "password", "login"),
    "general": (),
}
BITEXT_SKILL = {
    "INVOICE": "billing",
    "REFUND": "billing",
    "PAYMENT": "billing",
    "ORDER": "orders",
    "DELIVERY": "shipping",
    "SHIPPING_ADDRESS": "shipping",
    "ACCOUNT": "account",
}
