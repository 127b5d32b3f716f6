"""`check-config`: what cannot work (errors) and what exceeds the regulator's limits (warnings)."""

from __future__ import annotations

import os

from mailbot.config import BrandConfig, Config
from mailbot.outgoing.templating import Renderer

# French regulator's outer limits (ACPR recommendation 2022-R-01; payment services: CMF L.133-45).
ACK_MAX_BUSINESS_DAYS = 10
ANSWER_MAX_BUSINESS_DAYS = 42  # two months ≈ 42 business days
PAYMENT_MAX_DAYS, PAYMENT_MAX_EXCEPTIONAL = 15, 35


def sla_warnings(brand: BrandConfig, i: int) -> list[str]:
    sla, out = brand.sla, []
    ack_days = (sla.ack_hours or 0) / 24 if sla.ack_hours else (sla.ack_business_hours or 0) / 24
    if ack_days > ACK_MAX_BUSINESS_DAYS:
        out.append(f"brands[{i}].sla: acknowledgement limit {ack_days:g} days exceeds the "
                   f"regulator's {ACK_MAX_BUSINESS_DAYS} business days")
    for tier, days in sla.tiers.items():
        if days > ANSWER_MAX_BUSINESS_DAYS:
            out.append(f"brands[{i}].sla.tiers.{tier}: {days} business days exceeds the "
                       f"regulator's two months")
        limit = PAYMENT_MAX_EXCEPTIONAL if tier == "exceptional" else PAYMENT_MAX_DAYS
        if sla.payment_services and days > limit:
            out.append(f"brands[{i}].sla.tiers.{tier}: {days} business days exceeds the "
                       f"payment-services limit of {limit} business days")
    return out


def check_config(config: Config) -> tuple[list[str], list[str]]:
    """(errors, warnings). Errors name the key or template file and what is expected."""
    errors: list[str] = []
    warnings = [w for i, b in enumerate(config.brands) for w in sla_warnings(b, i)]
    tdir = config.resolve_path(config.templates_dir)
    if not tdir.is_dir():
        errors.append(f"key templates_dir: directory {tdir} does not exist")
    else:
        renderer = Renderer(tdir)
        errors += renderer.check([(b.key, b.languages) for b in config.brands])
    for i, b in enumerate(config.brands):
        if b.default_category not in {c.key for c in b.categories} and b.categories:
            errors.append(f"key brands[{i}].default_category: {b.default_category!r} is not a category key")
        for addr in b.team:
            if config.agent(addr) is None:
                errors.append(f"key brands[{i}].team: {addr} is not a configured agent ([[agents]])")
    sec = config.security
    if not sec.secret and not (sec.secret_env and os.environ.get(sec.secret_env)) and not sec.secret_file:
        warnings.append(f"security: no secret set ({sec.secret_env} is empty and there is no secret_file): "
                        "agent tokens use a built-in default key that anyone can read; set it in production")
    for i, im in enumerate(config.imap):
        try:
            im.password()
        except ValueError as exc:
            warnings.append(f"imap[{i}] ({im.username}): {exc}")
    return errors, warnings
