"""GB/T 2260 region codes: six digits, the first two a province's; and the provinces' names.

An event's ``region_code`` must be such a code (the codec and the native
decoder refuse any other as ``schema_invalid``): it decides which regional
regulator sees the event, so a made-up code would hide it from all of them.
"""

from __future__ import annotations

import re
from typing import Final

PROVINCES: Final[dict[str, str]] = {
    "11": "Beijing",
    "12": "Tianjin",
    "13": "Hebei",
    "14": "Shanxi",
    "15": "Inner Mongolia",
    "21": "Liaoning",
    "22": "Jilin",
    "23": "Heilongjiang",
    "31": "Shanghai",
    "32": "Jiangsu",
    "33": "Zhejiang",
    "34": "Anhui",
    "35": "Fujian",
    "36": "Jiangxi",
    "37": "Shandong",
    "41": "Henan",
    "42": "Hubei",
    "43": "Hunan",
    "44": "Guangdong",
    "45": "Guangxi",
    "46": "Hainan",
    "50": "Chongqing",
    "51": "Sichuan",
    "52": "Guizhou",
    "53": "Yunnan",
    "54": "Tibet",
    "61": "Shaanxi",
    "62": "Gansu",
    "63": "Qinghai",
    "64": "Ningxia",
    "65": "Xinjiang",
    "71": "Taiwan",
    "81": "Hong Kong",
    "82": "Macao",
}


_REGION_CODE: Final = re.compile(f"(?:{'|'.join(PROVINCES)})[0-9]{{4}}")


def is_region_code(value: object) -> bool:
    """Six ASCII digits whose first two are a province's."""
    return isinstance(value, str) and _REGION_CODE.fullmatch(value) is not None


def province(region_code: str) -> str:
    """The province of a region code, or ``?`` for a code outside GB/T 2260."""
    return PROVINCES.get(region_code[:2], "?")
