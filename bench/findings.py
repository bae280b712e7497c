"""What a run's rows say, in words: the sentences of docs/performance.md that depend on the run.

The notes in run.py say how each section measures and what was tried; the figures they
would quote change with every run (and every machine), so they are written here from the
rows of the run that writes the page, never by hand.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable

from common import Row

Finder = Callable[[list[Row]], str]


def span(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return f"{low:.{digits}f}x" if round(low, digits) == round(high, digits) else (
        f"{low:.{digits}f}-{high:.{digits}f}x")


def met_count(rows: list[Row]) -> str:
    met = sum(1 for r in rows if r.met)
    return "all met" if met == len(rows) else ("none met" if not met else f"{met} of {len(rows)} met")


def row_named(rows: list[Row], start: str) -> Row | None:
    return next((r for r in rows if r.what.startswith(start)), None)


def kernel(rows: list[Row]) -> str:
    blocked = [r for r in rows if r.target and " blocked," in r.what]
    unlisted = [r for r in rows if r.target and " unlisted," in r.what]
    if not blocked and not unlisted:
        return ""
    floor, xdpf = row_named(rows, "floor"), row_named(rows, "xdp-filter")
    text = (f"This run: a blocked ping at defaults costs {span([r.ratio or 0 for r in blocked])} "
            f"null with 1 and 100k rules (target <= 2.5x: {met_count(blocked)}), an unlisted "
            f"one {span([r.ratio or 0 for r in unlisted])} (target <= 3x: "
            f"{met_count(unlisted)}).")
    if floor is not None:
        text += f" The floor costs {floor.ratio:.2f}x null ({floor.value:.0f} ns)"
        text += f" and xdp-filter {xdpf.ratio:.2f}x." if xdpf is not None else "."
    cells = {r.what: r for r in rows if r.what.startswith("pingkiller v")}
    extra = [cells[w].value - cells[w.replace("defaults", "events off")].value
             for w in cells if w.endswith("defaults") and " blocked," in w
             and w.replace("defaults", "events off") in cells]
    if extra:
        text += (f" Events at defaults change a blocked ping's cost by "
                 f"{statistics.median(extra):+.1f} ns (median over rule counts and families).")
    missed = [r for r in blocked + unlisted if not r.met]
    if missed and floor is not None and floor.ratio is not None:
        over = [r.value - floor.value for r in missed]
        if floor.ratio > 2.5:
            text += (" The floor alone is above 2.5x: over this null, a bounds check, one hash "
                     "lookup and a counter already cost more than the blocked target allows, so "
                     "no filter that looks a rule up meets it on this machine.")
        text += (f" What the missed rows cost above the floor ({min(over):.0f}-{max(over):.0f} ns) "
                 "is pingkiller's own work: the settings lookup, the VLAN and IPv6 header "
                 "walks, the ICMP type check, a second lookup (the destination) for pings the "
                 "source does not block, the rule's hit count, the per-reason counter and, at "
                 "defaults, the event budget.")
    return text


def drop_rate(rows: list[Row]) -> str:
    pk = next((r for r in rows if r.target.startswith(">=") and "null" in r.target), None)
    if pk is None:
        return ""
    off, floor = row_named(rows, "pingkiller, 1 block rule, events off"), row_named(rows, "floor")
    xdpf, null = row_named(rows, "xdp-filter"), row_named(rows, "null")
    text = (f"This run: pingkiller at defaults drops {pk.ratio:.2f}x null's rate (target >= 0.85x: "
            f"{'met' if pk.met else 'not met'})")
    if off is not None:
        text += f", {off.ratio:.2f}x with events off"
    text += "."
    if floor is not None:
        text += f" The floor reaches {floor.ratio:.2f}x"
        text += f", xdp-filter {xdpf.ratio:.2f}x." if xdpf is not None else "."
    if null is not None and null.value:
        text += f" Null drops {null.value:.2f} Mpps, {1e3 / null.value:.0f} ns a frame."
    if not pk.met and floor is not None and floor.ratio is not None and floor.ratio < 0.85:
        text += (" Even the floor, one hash lookup and a counter, is below 0.85x here: the "
                 "target leaves less room than one lookup takes on this machine.")
    return text


def multi_cpu(rows: list[Row]) -> str:
    scaling = [r for r in rows if "scaling" in r.what]
    pk = next((r for r in scaling if r.target), None)
    if pk is None:
        return ""
    others = "; ".join(f"{r.what.split(',')[0]} {r.ratio:.2f}x" for r in scaling if r is not pk)
    bar = "1.8x" if pk.target.startswith(">= 1.8x (") else "95% of null's scaling (null is below 1.8x)"
    return (f"This run: pingkiller scales {pk.ratio:.2f}x from 1 to 2 CPUs ({others}); the bar "
            f"applied is {bar}: {'met' if pk.met else 'not met'}.")


def tc_kernel(rows: list[Row]) -> str:
    tc = {r.what.removeprefix("pingkill_tc_in "): r for r in rows
          if r.what.startswith("pingkill_tc_in ")}
    xdp = {r.what.removeprefix("pingkiller XDP "): r for r in rows
           if r.what.startswith("pingkiller XDP ")}
    cells = [w for w in tc if w in xdp]
    if not cells:
        return ""
    pings = [w for w in cells if not w.startswith("tcp")]
    text = (f"This run: over the pings, pingkill_tc_in costs "
            f"{span([tc[w].ratio or 0 for w in pings])} null tc where the XDP entry point costs "
            f"{span([xdp[w].ratio or 0 for w in pings])} null XDP")
    in_ns = [float(m.group(1)) for w in cells
             if (m := re.search(r"tc / XDP ([0-9.]+)x in ns", tc[w].note))]
    text += f"; per packet tc takes {span(in_ns)} XDP's time (every frame)." if in_ns else "."
    tcp = next((w for w in cells if w.startswith("tcp")), None)
    if tcp is not None:
        text += (f" The TCP segment: {tc[tcp].ratio:.2f}x null tc, "
                 f"{xdp[tcp].ratio:.2f}x null XDP.")
    null_tc = row_named(rows, "null tc")
    if null_tc is not None:
        text += (f" Null tc itself costs {null_tc.ratio:.2f}x null XDP "
                 f"({null_tc.value:.1f} ns).")
    return text


def tc_drop_rate(rows: list[Row]) -> str:
    versus = next((r for r in rows if r.what.startswith("pingkill_tc_in vs")), None)
    tc, xdp = row_named(rows, "pingkill_tc_in at"), row_named(rows, "pingkiller XDP")
    null_tc = row_named(rows, "null tc")
    if versus is None or tc is None or xdp is None or null_tc is None:
        return ""
    return (f"This run: pingkill_tc_in at tcx ingress drops {tc.value:.2f} Mpps, "
            f"{versus.value:.2f}x the XDP entry point's {xdp.value:.2f} Mpps (XDP: "
            f"{xdp.ratio:.2f}x null XDP). Null tc reaches {null_tc.ratio:.2f}x null XDP: the "
            f"sk_buff path with a program that does nothing leaves about that share of null "
            f"XDP's rate; pingkill_tc_in keeps {tc.ratio:.2f}x of null tc's rate, as the XDP "
            f"entry point keeps {xdp.ratio:.2f}x of null XDP's.")


FINDERS: dict[str, Finder] = {"1 kernel": kernel, "1b tc": tc_kernel, "2 drop rate": drop_rate,
                              "2b 2 CPUs": multi_cpu, "2c tc": tc_drop_rate}


def findings(section: str, rows: list[Row]) -> str:
    finder = FINDERS.get(section)
    mine = [r for r in rows if r.section == section]
    if finder is None or not mine:
        return ""
    try:
        return finder(mine)
    except (ValueError, ZeroDivisionError, TypeError):  # a section that failed part-way
        return ""
