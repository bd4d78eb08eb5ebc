"""Results of one run: each check or measurement per APISIX version and module, printed side by side.

Checks of this project's module ("ours") are asserted: a failed one fails the run. The same checks against
APISIX's built-in module are reported, not asserted (its known failures are part of the comparison)."""

MODULES = ("ours", "builtin")
HEAD = {"ours": "k8s-disc", "builtin": "APISIX built-in"}


class Results:
    def __init__(self):
        self.rows = {}  # (version, group, name) -> {module: (ok, text)}
        self.order = []

    def record(self, version, module, group, name, ok, text=""):
        key = (version, group, name)
        if key not in self.rows:
            self.rows[key] = {}
            self.order.append(key)
        self.rows[key][module] = (ok, text)
        mark = "measure" if ok is None else "ok" if ok else ("FAIL" if module == "ours" else "no")
        print(f"  [{version} {module:7}] {group}: {name}: {mark}{' - ' + text if text else ''}", flush=True)

    def failures(self):
        return [(k, v["ours"]) for k, v in self.rows.items() if "ours" in v and v["ours"][0] is False]

    def counts(self, module):
        cells = [v[module] for v in self.rows.values() if module in v and v[module][0] is not None]
        return sum(1 for ok, _ in cells if ok), len(cells)

    def value(self, version, group, name, module):
        cell = self.rows.get((version, group, name), {}).get(module)
        return cell[1] if cell else None

    def table(self):
        width = [66, 44]
        out = []
        for version in dict.fromkeys(k[0] for k in self.order):
            out.append("")
            out.append(f"APISIX {version}".ljust(width[0]) + HEAD["ours"].ljust(width[1]) + HEAD["builtin"])
            out.append("-" * (width[0] + 2 * width[1]))
            for key in (k for k in self.order if k[0] == version):
                label = f"{key[1]}: {key[2]}"
                cells = [_cell(self.rows[key].get(m), m) for m in MODULES]
                out.append(label[: width[0] - 1].ljust(width[0]) + cells[0][: width[1] - 1].ljust(width[1]) + cells[1])
        return "\n".join(out)


def _cell(c, module):
    if c is None:
        return "-"
    ok, text = c
    mark = "" if ok is None else "ok" if ok else ("FAIL" if module == "ours" else "no")
    return " ".join(x for x in (mark, text) if x)
