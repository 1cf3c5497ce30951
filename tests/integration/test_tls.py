"""DICOM TLS in and out, with certificates the test makes (a throw-away CA, a server and a client)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pynetdicom import AE, AllStoragePresentationContexts, evt

from dicomnode.config import Destination
from dicomnode.errors import NodeError
from dicomnode.scu import send_files
from dicomnode.tls import client_context, server_context
from tests.certificates import make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def _client(certs: Path, *, ca: str = "ca.pem", with_cert: bool = True) -> Destination:
    files = {"tls_certificate": str(certs / "client.pem"), "tls_private_key": str(certs / "client.key")}
    return Destination(name="node", ae_title="SPINENODE", host="127.0.0.1", port=1, tls=True,
                       tls_ca_certificates=str(certs / ca), **(files if with_cert else {}))


def test_the_node_speaks_mutual_tls_only(node_factory, series_files, certs: Path) -> None:  # noqa: ANN001
    node = node_factory(node={"tls_certificate": str(certs / "server.pem"),
                              "tls_private_key": str(certs / "server.key"),
                              "tls_ca_certificates": str(certs / "ca.pem")})
    files = series_files(101)[:3]
    ok = send_files(files, "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY",
                    ssl_context=client_context(_client(certs)))
    assert [r.status for r in ok] == [0, 0, 0]
    with pytest.raises(NodeError, match="not established"):  # plain DICOM to a TLS port
        send_files(files, "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY", timeout=5)
    with pytest.raises(NodeError):  # TLS without a client certificate
        send_files(files, "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY", timeout=5,
                   ssl_context=client_context(_client(certs, with_cert=False)))
    with pytest.raises(NodeError, match="TLS"):  # the node's certificate is not signed by the CA trusted
        send_files(files, "SPINENODE", "127.0.0.1", node.port, calling_ae="MODALITY", timeout=5,
                   ssl_context=client_context(_client(certs, ca="other.pem")))


def test_results_go_out_over_tls_to_a_tls_pacs(series_files, certs: Path) -> None:  # noqa: ANN001
    from dicomnode.config import NodeConfig

    received: list[str] = []
    ae = AE(ae_title="PACS")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax)
    ctx = server_context(NodeConfig(tls_certificate=str(certs / "server.pem"),
                                    tls_private_key=str(certs / "server.key")))
    server = ae.start_server(("127.0.0.1", 0), block=False, ssl_context=ctx,
                             evt_handlers=[(evt.EVT_C_STORE, lambda e: received.append(e.request.AffectedSOPInstanceUID)
                                            or 0x0000)])
    try:
        dest = _client(certs, with_cert=False)
        results = send_files(series_files(102)[:2], "PACS", "127.0.0.1", server.server_address[1],
                             ssl_context=client_context(dest))
        assert [r.status for r in results] == [0, 0] and len(received) == 2
    finally:
        server.shutdown()
