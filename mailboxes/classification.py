"""The classifier as a tenant sees it: its shipment-number prefix and its "enough detail" rules."""

from __future__ import annotations

import classifier
from tms.accounts.models import Tenant


def tenant_rules(tenant: Tenant) -> classifier.Rules:
    return classifier.Rules(lane_precision=tenant.lane_precision, require=tuple(tenant.required_fields or ()))


def classify_for_tenant(raw: bytes, tenant: Tenant | None) -> classifier.Classification:
    if tenant is None:
        return classifier.classify(raw)
    return classifier.classify(raw, shipment_prefix=tenant.ref_prefix, rules=tenant_rules(tenant))
