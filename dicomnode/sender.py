"""The sender: C-STOREs (or STOW-RS) outbox items to their destinations, retries, dead-letters.

Items due for a destination go over one association that proposes only their SOP classes and
transfer syntaxes, or in one STOW-RS request for a DICOMweb destination (``dicomnode.stow``,
whose answer maps onto the same statuses). A success (0x0000) or warning (0xB000-0xBFFF) status marks an item sent; a
failure status or no association schedules a retry with exponential backoff; after
``sender.max_attempts`` the item is dead (visible in ``spinenode status``; ``spinenode resend``
queues it again).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from dicomnode.config import Config, Destination
from dicomnode.db import OutboxItem, OutboxState, utcnow
from dicomnode.errors import NodeError
from dicomnode.logs import get_logger
from dicomnode.retry import RetryPolicy
from dicomnode.scu import send_files
from dicomnode.stow import send_stow
from dicomnode.tls import client_context
from dicomnode.wakeup import Wakeup

log = get_logger(__name__)
BATCH = 64


def _ok(status: int | None) -> bool:
    return status is not None and (status == 0 or 0xB000 <= status <= 0xBFFF)


class Sender:
    def __init__(self, cfg: Config, sessions: sessionmaker, *, wakeup: Wakeup | None = None) -> None:
        """``wakeup``: rung by this process's workers when results enter the outbox (and at shutdown)."""
        self.cfg = cfg
        self.sessions = sessions
        self.wakeup = wakeup
        self.policy = RetryPolicy(max_attempts=cfg.sender.max_attempts, base_s=cfg.sender.retry_base_s,
                                  max_s=cfg.sender.retry_max_s)
        self.destinations = {d.name: d for d in cfg.destinations}

    def run(self, stop: threading.Event) -> None:
        log.info("sender_started", destinations=list(self.destinations))
        while not stop.is_set():
            try:
                sent = self.run_once()
            except Exception as exc:  # noqa: BLE001 - keep the loop alive; the rows stay pending
                log.error("sender_loop_failed", error=repr(exc))
                sent = 0
            if not sent:
                (self.wakeup or stop).wait(self.cfg.sender.poll_interval_s)

    def run_once(self) -> int:
        """Send what is due; returns how many items were delivered."""
        with self.sessions() as session:
            due = session.scalars(
                select(OutboxItem).where(OutboxItem.state == OutboxState.PENDING,
                                         OutboxItem.next_attempt_at <= utcnow())
                .order_by(OutboxItem.id).limit(BATCH)).all()
        groups: dict[str, list[OutboxItem]] = defaultdict(list)
        for item in due:
            groups[item.destination].append(item)
        delivered = 0
        for name, items in groups.items():
            dest = self.destinations.get(name)
            if dest is None:
                self._failed(items, f"destination {name!r} is no longer configured")
                continue
            delivered += self._send(dest, items)
        return delivered

    def _send(self, dest: Destination, items: list[OutboxItem]) -> int:
        paths = [self.cfg.data_dir / i.path for i in items]
        try:
            if dest.kind == "dicomweb":
                results = send_stow(paths, [i.sop_instance_uid for i in items], dest)
            else:
                results = send_files(paths, dest.ae_title, dest.host, dest.port, calling_ae=self.cfg.node.ae_title,
                                     ssl_context=client_context(dest))
        except (NodeError, OSError) as exc:
            self._failed(items, str(exc))
            log.warning("send_failed", destination=dest.name, items=len(items), error=str(exc))
            return 0
        ok = [(i, r.status) for i, r in zip(items, results, strict=True) if _ok(r.status)]
        bad = [(i, r.status) for i, r in zip(items, results, strict=True) if not _ok(r.status)]
        if ok:
            with self.sessions.begin() as session:
                session.execute(update(OutboxItem).where(OutboxItem.id.in_([i.id for i, _ in ok]))
                                .values(state=OutboxState.SENT, sent_at=utcnow(), last_error=None,
                                        attempts=OutboxItem.attempts + 1))
            for item, status in ok:
                log.info("result_sent", destination=dest.name, sop_instance_uid=item.sop_instance_uid,
                         sop_class_uid=item.sop_class_uid)
                if status:  # stored, with a warning (e.g. 0xB000: elements coerced): sent, but say so
                    log.warning("result_sent_with_warning", destination=dest.name,
                                sop_instance_uid=item.sop_instance_uid, status=hex(status))
        for item, status in bad:
            self._failed([item], f"status {'none' if status is None else hex(status)}")
            log.warning("send_refused", destination=dest.name, sop_instance_uid=item.sop_instance_uid,
                        status=None if status is None else hex(status))
        return len(ok)

    def _failed(self, items: list[OutboxItem], error: str) -> None:
        now = utcnow()
        with self.sessions.begin() as session:
            for item in items:
                attempts = item.attempts + 1
                wait = self.policy.next_wait(attempts)
                values: dict = {"attempts": attempts, "last_error": error}
                if wait is None:
                    values["state"] = OutboxState.DEAD
                    log.error("result_dead", destination=item.destination,
                              sop_instance_uid=item.sop_instance_uid, attempts=attempts, error=error)
                else:
                    values["next_attempt_at"] = now + dt.timedelta(seconds=wait)
                session.execute(update(OutboxItem).where(OutboxItem.id == item.id).values(**values))


def resend(sessions: sessionmaker, *, job_id: int | None = None, dead_only: bool = True) -> int:
    """Queue outbox items again (all dead ones, or every item of one job)."""
    with sessions.begin() as session:
        stmt = update(OutboxItem)
        if job_id is not None:
            stmt = stmt.where(OutboxItem.job_id == job_id)
        if dead_only:
            stmt = stmt.where(OutboxItem.state == OutboxState.DEAD)
        result = session.execute(stmt.values(state=OutboxState.PENDING, attempts=0, next_attempt_at=utcnow()))
        return int(result.rowcount)
