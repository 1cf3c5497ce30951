"""The SCP's supported contexts: cheap to copy per association, and equal to what pynetdicom would copy."""

from __future__ import annotations

import copy

from dicomnode.config import NodeConfig
from dicomnode.scp import _SharedContext, make_ae


def test_a_shared_context_copies_like_a_deep_copy_without_copying_uids() -> None:
    ae = make_ae(NodeConfig())
    originals = ae.supported_contexts
    shared = [_SharedContext.of(cx) for cx in originals]
    copies = copy.deepcopy(shared)
    assert [str(c) for c in copies] == [str(c) for c in originals]
    assert len(copies) > 100 and all(len(c.transfer_syntax) > 30 for c in copies[1:])
    copies[0].transfer_syntax.append("1.2.3")  # an association changing its copy changes nothing else
    copies[0].context_id = 7
    assert "1.2.3" not in shared[0].transfer_syntax and "1.2.3" not in originals[0].transfer_syntax
    assert shared[0].context_id is None
