"""Parameters turned into domain objects, or one clear 404/422: for the dependencies of deps.py and for the
routes and services that read a parameter of their own (a `from`, a list of indicators).

A unit outside the key's scope is answered exactly like a unit that does not exist, so a scoped key cannot
even learn which codes exist elsewhere.
"""

from __future__ import annotations

from services.query.scope import Sight
from shared.catalog import Catalog
from shared.catalog import Indicator as CatalogIndicator
from shared.errors import NotFound, ValidationFailed, safe_echo
from shared.hierarchy import Hierarchy, Unit
from shared.periods import Period, PeriodError, parse_period


def invalid(loc: str, message: str) -> ValidationFailed:
    return ValidationFailed(message, errors=[{"loc": loc, "message": message}])


def visible_unit(hierarchy: Hierarchy, sight: Sight, edition: str, code: str) -> Unit:
    unit = hierarchy.get(edition, code)
    if unit is None or not sight.sees(unit):
        raise NotFound(f"there is no unit '{safe_echo(code, 16)}' in edition {edition}")
    return unit


def parse_param(loc: str, code: str) -> Period:
    if not code.isascii():  # the period regexes' `\d` would read other scripts' digits (２０２４)
        raise invalid(loc, "a period code is written in ASCII: 2024, 2024-H1, 2024-Q3, 2024-07 or 2024-07-15")
    try:
        return parse_period(code)
    except PeriodError as exc:
        raise invalid(loc, safe_echo(str(exc), 200)) from exc


def catalog_indicator(catalog: Catalog, code: str) -> CatalogIndicator:
    found = catalog.get(code)
    if found is None:
        raise invalid("indicator", f"'{safe_echo(code, 64)}' is not an indicator of the catalogue (see /v1/indicators)")
    return found
