"""OData `$filter` literals, built in one place: every filter the adapters send quotes its values here.

OData (ABNF, `SQUOTE-in-string`) writes a single quote inside a string literal as two; without that, a value
holding a quote would end the literal and add terms of its own to the filter.
"""

from __future__ import annotations


def literal(value: str) -> str:
    """`value` as an OData string literal: in single quotes, each single quote inside doubled."""
    if not isinstance(value, str):
        raise TypeError(f"an OData string literal is made of text, not {type(value).__name__}")
    return "'" + value.replace("'", "''") + "'"
