"""Reconcile's typed result: a finding's JSON document has only the keys of its kind, in the
order `vfpool reconcile --json` has always printed them."""

from __future__ import annotations

from vfpool.service.results import Finding, ReconcileResult


def test_a_finding_has_only_its_kinds_keys_in_the_json_order() -> None:
    drift = Finding(lease=3, vf="0000:05:10.0", owner="vm1", problem="drifted",
                    action="re-apply the lease's config",
                    diff={"mac": {"desired": "02:00:00:00:00:01", "current": None}},
                    result="re-applied")
    assert list(drift.document()) == ["lease", "vf", "owner", "problem", "action", "diff",
                                      "result"]
    short = Finding(pool="tenant", pf="0000:05:00.0", problem="PF has 2 VFs",
                    action="none here")
    assert short.document() == {"pool": "tenant", "pf": "0000:05:00.0",
                                "problem": "PF has 2 VFs", "action": "none here"}
    reserved = Finding(lease=4, vf="0000:05:10.1", problem="reserved", action="none")
    assert list(reserved.document()) == ["lease", "vf", "problem", "action"]


def test_the_result_document_lists_the_findings_in_order() -> None:
    first = Finding(pool="a", vf="0000:05:10.0", problem="VF is back on the host",
                    action="mark it free")
    second = Finding(pool="a", pf="0000:05:00.0", problem="short", action="none here")
    assert ReconcileResult(True, (first, second)).document() == {
        "dry_run": True, "findings": [first.document(), second.document()]}
    assert ReconcileResult(False, ()).document() == {"dry_run": False, "findings": []}
