"""Wiring of the Storage SCP: which services, transfer syntaxes and AE checks it offers."""

from __future__ import annotations

import copy

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from dicomnode.config import NodeConfig
from dicomnode.errors import NodeError
from dicomnode.handlers import HEALTH_CHECK_AE, StoreContext, handle_echo, handle_store
from dicomnode.logs import get_logger
from dicomnode.metrics import count_store
from dicomnode.tls import server_context
from pipeline.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

log = get_logger(__name__)


def make_ae(node: NodeConfig) -> AE:
    """Verification, and every storage SOP class in every transfer syntax pynetdicom knows:
    PACS routing sends whole studies; what is not analysed is still stored and recorded.
    Compressed data (JPEG-LS, JPEG 2000, RLE ...) is stored as received and decoded later."""
    ae = AE(ae_title=node.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.require_called_aet = node.require_called_ae
    ae.require_calling_aet = list(node.allowed_calling_aes)
    ae.maximum_associations = node.max_associations
    ae.maximum_pdu_size = 0  # no limit on what we accept
    return ae


class _SharedContext(PresentationContext):
    """A supported context whose copy for a new association shares its (immutable) UIDs.

    pynetdicom deep-copies every supported context for every association it accepts. With every
    storage SOP class in every transfer syntax (7,650 UIDs, each re-validated when copied) that
    took 110 ms per association on the 2-core development machine, more than receiving a
    12-slice study. UIDs are immutable strings; only the transfer syntax list is copied."""

    def __deepcopy__(self, memo: dict) -> _SharedContext:
        new = copy.copy(self)
        new._transfer_syntax = list(self._transfer_syntax)
        return new

    @classmethod
    def of(cls, context: PresentationContext) -> _SharedContext:
        new = cls()
        new.__dict__.update(context.__dict__)
        new._transfer_syntax = list(context._transfer_syntax)
        return new


def start_scp(node: NodeConfig, ctx: StoreContext) -> ThreadedAssociationServer:
    """Start listening in background threads; the bound port is ``server.server_address[1]``."""
    ae = make_ae(node)
    handlers: list = [
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, _counted_store, [ctx]),
        (evt.EVT_REJECTED, _log_rejected),
        (evt.EVT_ABORTED, _log_aborted),
    ]
    ssl_context = server_context(node)
    try:
        server = ae.start_server((node.host, node.port), block=False, evt_handlers=handlers,
                                 ssl_context=ssl_context,
                                 contexts=[_SharedContext.of(cx) for cx in ae.supported_contexts])
    except OSError as exc:
        raise NodeError(f"cannot listen on {node.host}:{node.port} ({exc.strerror}): another node or program "
                        "may hold the port; change node.port or set SPINENODE_NODE_PORT") from None
    assert server is not None  # block=False always returns the server
    log.info("scp_listening", ae_title=node.ae_title, host=node.host, port=server.server_address[1],
             calling_ae_whitelist=list(node.allowed_calling_aes) or "any",
             tls="off" if ssl_context is None else ("mutual" if node.tls_ca_certificates else "server"))
    return server


def _counted_store(event, ctx: StoreContext) -> int:  # noqa: ANN001 - pynetdicom Event
    status = handle_store(event, ctx)
    count_store(status)
    return status


def _log_rejected(event) -> None:  # noqa: ANN001
    if event.assoc.requestor.ae_title == HEALTH_CHECK_AE:
        return  # /healthz's own C-ECHO on a node with a calling-AE whitelist: expected at every check
    log.warning("association_rejected", calling_ae=event.assoc.requestor.ae_title,
                called_ae=event.assoc.acceptor.ae_title, peer=event.assoc.requestor.address)


def _log_aborted(event) -> None:  # noqa: ANN001
    log.warning("association_aborted", calling_ae=event.assoc.requestor.ae_title)
