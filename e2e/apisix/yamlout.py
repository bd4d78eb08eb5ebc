"""A small block-style YAML writer for APISIX's config.yaml and apisix.yaml (3.8.1's CLI reads YAML with
lua-tinyyaml, which handles block style and double-quoted strings, not every flow form)."""

import json


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(str(v))  # a JSON string is a YAML double-quoted scalar


def _lines(v, indent):
    pad = " " * indent
    if isinstance(v, dict):
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                yield f"{pad}{k}:"
                yield from _lines(x, indent + 2)
            else:
                yield f"{pad}{k}: {_empty(x) if isinstance(x, (dict, list)) else _scalar(x)}"
    elif isinstance(v, list):
        for x in v:
            if isinstance(x, (dict, list)) and x:
                inner = list(_lines(x, indent + 2))
                yield f"{pad}- {inner[0].lstrip()}"
                yield from inner[1:]
            else:
                yield f"{pad}- {_empty(x) if isinstance(x, (dict, list)) else _scalar(x)}"
    else:
        yield pad + _scalar(v)


def _empty(v):
    return "{}" if isinstance(v, dict) else "[]"


def dump(doc):
    return "\n".join(_lines(doc, 0)) + "\n"
