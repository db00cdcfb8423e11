"""The sim's netlink read of one VF (``vf_config``) says what its read of the whole table
(``vf_configs``) says for that VF, and waits behind a hang fault as the table's read does."""

from __future__ import annotations

import errno
import threading

import pytest

from vfpool.model.vfconfig import VfConfig
from vfpool.sim.host import SimHost

PF = "enp5s0f0"  # the 82599's first port, 0000:05:00.0


@pytest.fixture
def four_vfs(sim: SimHost) -> SimHost:
    sim.write_attr(sim.root / "sys/bus/pci/devices/0000:05:00.0/sriov_numvfs", "4")
    sim.set_vf(PF, 1, "vlan", VfConfig(vlan=12, qos=2))
    sim.set_vf(PF, 2, "mac", VfConfig(mac="02:00:00:00:00:22"))
    sim.set_vf(PF, 3, "spoofchk", VfConfig(spoofchk=False))
    return sim


def test_one_vf_reads_as_the_table_reads_it(four_vfs: SimHost) -> None:
    table = four_vfs.vf_configs(PF)
    assert sorted(table) == [0, 1, 2, 3]
    assert (table[1].vlan, table[2].mac, table[3].spoofchk) == (12, "02:00:00:00:00:22", False)
    for index, config in table.items():
        assert four_vfs.vf_config(PF, index) == config
    assert four_vfs.vf_config(PF, 4) is None  # at numvfs
    assert four_vfs.vf_config("enp5s0f1", 0) is None  # a PF without VFs


def test_a_netdev_that_is_no_pf_is_enodev_for_both_reads(four_vfs: SimHost) -> None:
    for read in (lambda: four_vfs.vf_configs("nosuch0"),
                 lambda: four_vfs.vf_config("nosuch0", 0)):
        with pytest.raises(OSError) as raised:
            read()
        assert raised.value.errno == errno.ENODEV


def test_a_hang_on_the_pfs_netlink_holds_the_read_of_one_vf(four_vfs: SimHost) -> None:
    four_vfs.inject_fault(f"netlink:{PF}", kind="hang")
    read: list[VfConfig | None] = []
    worker = threading.Thread(target=lambda: read.append(four_vfs.vf_config(PF, 1)),
                              daemon=True)
    worker.start()
    worker.join(timeout=0.5)
    assert worker.is_alive() and read == []
    four_vfs.clear_faults()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert read == [four_vfs.vf_configs(PF)[1]]
