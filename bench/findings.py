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
    if xdpf is not None and xdpf.ratio is None:  # not installed
        xdpf = None
    clean = re.search(r"([0-9.]+)x null with the NET_RX clock", pk.note)
    if clean is not None:  # the AF_PACKET flood: a bracket, and the target held to both ends
        text = (f"This run: pingkiller at defaults drops {pk.ratio:.2f}x null's rate as measured "
                f"and {clean.group(1)}x with the NET_RX clock's bound taken out of every frame, "
                f"so between the two (target >= 0.85x, held to both: "
                f"{'met' if pk.met else 'not met'})")
    else:
        text = (f"This run: pingkiller at defaults drops {pk.ratio:.2f}x null's rate (target >= "
                f"0.85x: {'met' if pk.met else 'not met'})")
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
    if null is not None and null.note.startswith("NET_RX"):
        text += packet_drop_rate(rows, pk, null)
    return text


def ns_over(row: Row | None) -> float | None:
    """The ns a frame a row of the AF_PACKET flood adds over its reference (from its note)."""
    m = re.search(r"([+-][0-9]+) ns a frame over", row.note) if row is not None else None
    return float(m.group(1)) if m else None


def packet_drop_rate(rows: list[Row], pk: Row, null: Row) -> str:
    """Section 2's AF_PACKET flood: each program's ns over null, the bracket the NET_RX
    clock's own time leaves around pingkiller's ratio, and what 0.85x asks of the path."""
    extra = ns_over(pk)
    if extra is None:
        return ""
    others = [(label, ns_over(row_named(rows, start))) for label, start in (
        ("events off", "pingkiller, 1 block rule, events off"), ("the floor", "floor"),
        ("xdp-filter", "xdp-filter"), ("nftables", "nftables"))]
    text = (f" On this path pingkiller at defaults adds {extra:+.0f} ns a frame over null ("
            + ", ".join(f"{label} {value:+.0f}" for label, value in others if value is not None)
            + ").")
    probes = row_named(rows, "NET_RX clock")
    if extra > 0:
        low = 1e3 / null.value - (probes.value if probes is not None else 0.0)
        text += (f" 0.85x needs null's own time a frame to be at least 5.7 times pingkiller's "
                 f"extra, {extra * 0.85 / 0.15:.0f} ns; this path's null takes "
                 f"{low:.0f}-{1e3 / null.value:.0f} ns (without and with the clock's bound), a "
                 "NIC's batched poll far less, where the same extra cost keeps less of null's "
                 "rate.")
    return text


def multi_cpu(rows: list[Row]) -> str:
    scaling = [r for r in rows if "scaling" in r.what]
    pk = next((r for r in scaling if r.target), None)
    if pk is None:
        return ""
    others = "; ".join(f"{r.what.split(',')[0]} {r.ratio:.2f}x" for r in scaling if r is not pk)
    bar = "1.8x" if pk.target.startswith(">= 1.8x (") else "95% of null's scaling (null is below 1.8x)"
    text = (f"This run: pingkiller scales {pk.ratio:.2f}x from 1 to 2 CPUs ({others}); the bar "
            f"applied is {bar}: {'met' if pk.met else 'not met'}.")
    two = next((r for r in rows if r.target == "" and r.what == pk.what.replace(
        ", scaling 2 CPUs / 1 CPU", ", 2 CPUs")), None)
    m = re.match(r"NET_RX ([0-9]+) ns a frame on 1 CPU, ([0-9]+) on 2", two.note) if two else None
    if m:
        text += (f" Its frames take {m.group(1)} ns of NET_RX a frame on 1 CPU and {m.group(2)} "
                 "on 2.")
    return text


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
    null_xdp = row_named(rows, "null XDP")
    if null_tc.note.startswith("NET_RX") and null_xdp is not None:
        tc_extra, xdp_extra = ns_over(tc) or 0.0, ns_over(xdp) or 0.0
        alike = abs(tc_extra - xdp_extra) <= 0.25 * max(abs(tc_extra), abs(xdp_extra), 1.0)
        return (f"This run: pingkill_tc_in at tcx ingress drops {tc.value:.2f} Mpps, "
                f"{versus.value:.2f}x the XDP entry point's {xdp.value:.2f} Mpps, per second "
                f"of NET_RX. Null tc reaches {null_tc.ratio:.2f}x null XDP: on this path a frame "
                f"takes {1e3 / null_tc.value:.0f} ns to reach tcx and be dropped there, "
                f"{1e3 / null_xdp.value:.0f} ns to be dropped by XDP (with programs that do "
                f"nothing else). Over those, pingkill_tc_in adds {tc_extra:+.0f} ns a frame and "
                f"the XDP entry point {xdp_extra:+.0f}"
                + (": the entry points cost about the same, and the ratio between them is the "
                   "two paths'." if alike else "."))
    return (f"This run: pingkill_tc_in at tcx ingress drops {tc.value:.2f} Mpps, "
            f"{versus.value:.2f}x the XDP entry point's {xdp.value:.2f} Mpps (XDP: "
            f"{xdp.ratio:.2f}x null XDP). Null tc reaches {null_tc.ratio:.2f}x null XDP: the "
            f"sk_buff path with a program that does nothing leaves about that share of null "
            f"XDP's rate; pingkill_tc_in keeps {tc.ratio:.2f}x of null tc's rate, as the XDP "
            f"entry point keeps {xdp.ratio:.2f}x of null XDP's.")


def limit_kernel(rows: list[Row]) -> str:
    by_default = [r for r in rows if "(--limit)" in r.what and r.ratio is not None]
    by_rule = [r for r in rows if "by a rule" in r.what and r.ratio is not None]
    allowed, blocked = row_named(rows, "pingkiller v4 allowed"), row_named(rows, "pingkiller v4 blocked")
    if not by_default or not by_rule or allowed is None or blocked is None:
        return ""
    null_ratio = [float(m.group(1)) for r in by_rule if (m := re.match(r"([0-9.]+)x null", r.note))]
    text = (f"This run: a ping limited by --limit costs {span([r.ratio or 0 for r in by_default])} "
            f"a blocked ping (target <= 1.3x: {met_count(by_default)}), whether under its rate "
            f"(a compare-and-swap a pass) or over it (the bucket only read). A ping limited by "
            f"a rule costs {span([r.ratio or 0 for r in by_rule])} a blocked ping "
            f"({met_count(by_rule)})")
    if null_ratio and allowed.ratio and blocked.ratio:
        text += (f", {span([n / allowed.ratio for n in null_ratio])} an allowed one: a blocked "
                 f"source decides alone ({blocked.ratio:.2f}x null), but block beats limit, so "
                 f"before a limit rule may decide, the destination is looked up for a block "
                 f"rule as it is for an allowed ping ({allowed.ratio:.2f}x null), and then the "
                 "rule's rate (an array lookup) and its bucket (an LRU hash lookup). Meeting "
                 "1.3x would mean letting a limited source decide alone, so that a limited "
                 "prefix could reach a block-protected host at its rate; the precedence is "
                 "kept, and the target holds for --limit only.")
    churn = [r for r in rows if "spoofed" in r.what]
    if len(churn) == 2:
        text += (f" A flood from new sources adds {churn[0].value:.0f} ns a frame over null "
                 f"without a total (a bucket made and, the map full, one evicted) and "
                 f"{churn[1].value:.0f} ns with --limit-total (refused before a bucket is made)")
    locks = [r for r in rows if r.what.startswith("bucket under bpf_spin_lock")]
    if locks:
        text += ("; a bucket under a bpf_spin_lock (a plain hash: LRU maps refuse the lock) "
                 "costs " + ", ".join(f"{r.ratio:.2f}x" for r in locks if r.ratio) + " the "
                 "compare-and-swap bucket from " + " and ".join(
                     r.what.rsplit(", ", 1)[1].removesuffix(" at once") for r in locks)
                 + " (over the rate the compare-and-swap bucket is only read, the lock is "
                   "taken for every ping)")
    return text + "."


FINDERS: dict[str, Finder] = {"1 kernel": kernel, "1b tc": tc_kernel, "1c limit": limit_kernel,
                              "2 drop rate": drop_rate,
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
