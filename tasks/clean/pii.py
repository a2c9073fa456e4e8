"""PII redaction by regex: e-mail addresses, public IP addresses and (optionally) phone numbers.

`Redactor(spec)(text)` returns `(text, n_redactions)`. Matches are replaced, never dropped.

- E-mail: `local@domain.tld` with a dotted domain and a 2+ letter TLD.
- IPv4: four dotted octets, validated with `ipaddress`; only global (public) addresses are redacted, so
  192.168.1.1, 10.0.0.1, 127.0.0.1 and other private or reserved ranges stay. A dotted quad that is part of
  a longer dotted run of numbers (`1.2.3.4.5`, a version string) is left alone.
- IPv6: colon-separated hex groups validated with `ipaddress`; global addresses only (`::1`, `fe80::` stay).
- Phones (off by default, many false positives): North-American-style numbers with an optional `+CC`.

Each pattern is only run when a cheap pre-check passes (`@` in the text, a digit-dot run, a `:`).
"""

from __future__ import annotations

import ipaddress
import re

from data_specs.clean import PIISpec

EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"  # local part
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"  # dotted domain, letter TLD
)
IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{3}\)|\d{3})[ .-]?\d{3}[ .-]\d{4}(?!\w)")
_HAS_DOTTED_NUMBER = re.compile(r"\d\.\d").search
_HAS_IPV6_SHAPE = re.compile(r"[0-9A-Fa-f]:[0-9A-Fa-f:]|::").search
_HAS_DIGIT_RUN = re.compile(r"\d{3}").search


def _is_public_ip(candidate: str) -> bool:
    try:
        return ipaddress.ip_address(candidate).is_global
    except ValueError:
        return False


class Redactor:
    """Replace the PII kinds switched on in `PIISpec` with the spec's replacement strings."""

    def __init__(self, spec: PIISpec) -> None:
        self.spec = spec

    def __call__(self, text: str) -> tuple[str, int]:
        spec = self.spec
        count = 0

        if spec.emails and "@" in text:
            text, n = EMAIL_RE.subn(spec.email_replacement, text)
            count += n

        if spec.ip_addresses:
            hits = 0

            def _ip(m: re.Match[str]) -> str:
                nonlocal hits
                if _is_public_ip(m.group(0)):
                    hits += 1
                    return spec.ip_replacement
                return m.group(0)

            if _HAS_DOTTED_NUMBER(text):
                text = IPV4_RE.sub(_ip, text)
            if ":" in text and _HAS_IPV6_SHAPE(text):
                text = IPV6_RE.sub(_ip, text)
            count += hits

        if spec.phone_numbers and _HAS_DIGIT_RUN(text):
            text, n = PHONE_RE.subn(spec.phone_replacement, text)
            count += n
        return text, count
