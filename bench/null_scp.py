"""A pynetdicom Storage SCP whose C-STORE handler does nothing: the DICOM library's own ceiling.

It is made by the node's own ``make_ae`` (same presentation contexts, transfer syntaxes and
maximum PDU), so `bench/ingest.py` compares the node with the library under the same settings.

    .venv/bin/python -m bench.null_scp --port-file FILE
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from pynetdicom import evt

from dicomnode.config import NodeConfig
from dicomnode.scp import make_ae


def _do_nothing(_event: object) -> int:
    return 0x0000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port-file", type=Path, required=True, help="where to write the port the OS chose")
    args = parser.parse_args()
    ae = make_ae(NodeConfig(host="127.0.0.1", port=0))
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, _do_nothing)])
    assert server is not None
    args.port_file.write_text(str(server.server_address[1]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.shutdown()


if __name__ == "__main__":
    main()
