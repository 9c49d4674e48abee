"""Value objects: statuses are enums, given as enums or their string values."""

import json

import pytest

from elm.types import MutationStatus, Proposal


def test_proposal_status_strings_become_the_enum_and_unknown_ones_are_refused():
    p = Proposal(source="x = 1\n", parent_ids=(3,), mutator="gp", status="no_op")
    assert p.status is MutationStatus.NO_OP and not p.usable
    assert Proposal(source="x = 1\n", parent_ids=(), mutator="gp").usable
    assert not Proposal(source=None, parent_ids=(), mutator="gp").usable
    assert json.dumps({"s": p.status}) == '{"s": "no_op"}' and f"{p.status}" == "no_op"
    with pytest.raises(ValueError, match="not a mutation status.*MutationStatus"):
        Proposal(source=None, parent_ids=(), mutator="gp", status="okay")
