"""upgrade: run the installed program on attachments in place of the one each runs,
keeping their policy, rules with hits, counters and events."""

from __future__ import annotations

from pingkiller import abi
from pingkiller.attachment.opening import open_writer
from pingkiller.attachment.state import abi_problem, outdated
from pingkiller.datapath import migrate
from pingkiller.datapath.program import program_digest
from pingkiller.model.enums import Direction, Hook
from pingkiller.model.errors import Remedy, StaleAttachment
from pingkiller.model.point import Point, validate_ifname
from pingkiller.model.results import Upgraded
from pingkiller.ops.common import chosen, store_at
from pingkiller.ops.detach import recovered_points
from pingkiller.ops.listing import PinRoot
from pingkiller.publish import PINNED_MAPS, load_object, object_for, publish
from pingkiller.store import Store
from pingkiller.store.records import UNRECORDED
from pingkiller.system import capabilities


def upgrade(ifname: str, *, hook: Hook | str | None = None,
            direction: Direction | str | None = None, pin_root: PinRoot = None) -> list[Upgraded]:
    """Run the installed program on ``ifname``'s attachments (those at ``hook`` and
    ``direction``, when given) in place of the one each runs.

    The new program is loaded on the attachment's own maps (policy, rules with their hit
    counts, counters, events), which it adopts unchanged when their ABI version is one it
    runs on (:data:`pingkiller.abi.ADOPTABLE_ABI_VERSIONS`); maps of an older version it
    converts (:data:`~pingkiller.abi.MIGRATABLE_ABI_VERSIONS`): those whose layout changed
    are copied into fresh ones, and what the old program counted meanwhile is carried
    over. It is swapped in with one atomic update: no packet meets no program. All or
    nothing under kill -9, like a replace. An attachment that runs the installed program
    already is left as is.
    """
    validate_ifname(ifname)
    store = store_at(pin_root)
    capabilities.require(load=True)
    store.check_access(write=True)
    with store.writer() as recovered:
        done = []
        for point in chosen(store, ifname, hook, direction, "upgrade"):
            done.append(_upgrade(store, point, tuple(recovered)))
            recovered = []
    return done


def _upgrade(store: Store, point: Point, recovered: tuple[str, ...]) -> Upgraded:
    """:func:`upgrade` at one point; call as a writer."""
    with open_writer(store, point, check_abi=False) as existing:
        record = existing.identity or UNRECORDED
        before, installed = record.program.hex(), program_digest().hex()
        converted = record.abi_version in abi.MIGRATABLE_ABI_VERSIONS
        if record.abi_version not in abi.ADOPTABLE_ABI_VERSIONS and not converted:
            raise abi_problem(point, record.abi_version)
        if not outdated(record):
            return Upgraded(point, False, record.abi_version, abi.ABI_VERSION, before,
                            installed, recovered)
        now = existing.health()
        if now.state.stale:
            raise StaleAttachment(f"{point.label}'s attachment filters nothing ({now.problem})",
                                  point=point, remedy=Remedy.DETACH)
        obj = object_for(existing.strategy, point)
        try:
            if converted:
                step = migrate.step_for(record.abi_version)
                for name in step.reused:
                    obj.reuse_map(name, existing.maps[name])
                load_object(obj)
                carry = step.convert(existing.maps, obj.maps)
                publish(store, obj, existing.strategy, point, existing.link)
                carry(existing.maps, obj.maps)
            else:
                for name in PINNED_MAPS:
                    obj.reuse_map(name, existing.maps[name])
                load_object(obj)
                publish(store, obj, existing.strategy, point, existing.link)
        finally:
            obj.close()
    return Upgraded(point, True, record.abi_version, abi.ABI_VERSION, before, installed,
                    recovered)


def upgrade_all(*, pin_root: PinRoot = None) -> list[Upgraded]:
    """:func:`upgrade` every attachment that can be (in name order, XDP first)."""
    done: list[Upgraded] = []
    for point in recovered_points(pin_root):
        done += upgrade(point.ifname, hook=point.hook, direction=point.direction,
                        pin_root=pin_root)
    return done
