-- A store written by vfpool 0.1.0 (schema 0002) on a simulated host: pools tenant (active,
-- autostart, macvtap), gpu (active, vfio) and idle (inactive); leases 1-3 active, 4 released.
-- Rebuilt with sqlite3 executescript() by the upgrade tests.
BEGIN TRANSACTION;
CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO "alembic_version" VALUES('0002');
CREATE TABLE events (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	at DATETIME NOT NULL, 
	actor VARCHAR(128), 
	action VARCHAR(64) NOT NULL, 
	pool VARCHAR(64), 
	pf VARCHAR(16), 
	vf VARCHAR(16), 
	lease_id INTEGER, 
	detail JSON
);
INSERT INTO "events" VALUES(1,'2026-11-26 11:58:07.184638','root[3389]','pool.define','tenant',NULL,NULL,NULL,'{"definition": "# vfpool pool definition; `vfpool pool define --file` reads it back\nname = \"tenant\"\nvfs = 4\nmethod = \"auto\"\nmode = \"macvtap\"\nautostart = false\npf = [\n    { pci = \"0000:85:00.0\" },\n    { pci = \"0000:85:00.1\", range = \"0-7\" },\n]\n\n[defaults]\nvlan = 100\n"}');
INSERT INTO "events" VALUES(2,'2026-11-26 11:58:08.754929','root[3390]','pool.define','gpu',NULL,NULL,NULL,'{"definition": "# vfpool pool definition; `vfpool pool define --file` reads it back\nname = \"gpu\"\nvfs = 2\nmethod = \"auto\"\nmode = \"vfio\"\nautostart = false\npf = [\n    { pci = \"0000:05:00.0\" },\n]\n"}');
INSERT INTO "events" VALUES(3,'2026-11-26 11:58:10.260744','root[3391]','pool.define','idle',NULL,NULL,NULL,'{"definition": "# vfpool pool definition; `vfpool pool define --file` reads it back\nname = \"idle\"\nvfs = 3\nmethod = \"auto\"\nmode = \"netdev\"\nautostart = false\npf = [\n    { pci = \"0000:05:00.1\" },\n]\n"}');
INSERT INTO "events" VALUES(4,'2026-11-26 11:58:11.814203','root[3392]','pf.resize','tenant','0000:85:00.0',NULL,NULL,'{"numvfs": 4}');
INSERT INTO "events" VALUES(5,'2026-11-26 11:58:11.814211','root[3392]','pf.resize','tenant','0000:85:00.1',NULL,NULL,'{"numvfs": 4}');
INSERT INTO "events" VALUES(6,'2026-11-26 11:58:11.814213','root[3392]','pool.start','tenant',NULL,NULL,NULL,'{"changed": ["0000:85:00.0", "0000:85:00.1"], "was_active": false}');
INSERT INTO "events" VALUES(7,'2026-11-26 11:58:13.342668','root[3393]','pf.resize','gpu','0000:05:00.0',NULL,NULL,'{"numvfs": 2}');
INSERT INTO "events" VALUES(8,'2026-11-26 11:58:13.342676','root[3393]','pool.start','gpu',NULL,NULL,NULL,'{"changed": ["0000:05:00.0"], "was_active": false}');
INSERT INTO "events" VALUES(9,'2026-11-26 11:58:15.072288','root[3394]','pool.autostart','tenant',NULL,NULL,NULL,'{"enabled": true}');
INSERT INTO "events" VALUES(10,'2026-11-26 11:58:17.747833','root[3395]','lease.reserve','tenant','0000:85:00.0','0000:85:02.0',1,'{"owner": "vm1"}');
INSERT INTO "events" VALUES(11,'2026-11-26 11:58:17.753390','root[3395]','lease.reserve','tenant','0000:85:00.0','0000:85:02.1',2,'{"owner": "vm1"}');
INSERT INTO "events" VALUES(12,'2026-11-26 11:58:17.803477','root[3395]','lease.acquire','tenant','0000:85:00.0','0000:85:02.0',1,'{"owner": "vm1", "mode": "macvtap", "mac": "5e:9b:5f:03:34:4a"}');
INSERT INTO "events" VALUES(13,'2026-11-26 11:58:17.830177','root[3395]','lease.acquire','tenant','0000:85:00.0','0000:85:02.1',2,'{"owner": "vm1", "mode": "macvtap", "mac": "62:f0:c6:e5:57:d8"}');
INSERT INTO "events" VALUES(14,'2026-11-26 11:58:20.320676','root[3397]','lease.reserve','gpu','0000:05:00.0','0000:05:10.0',3,'{"owner": "vm2"}');
INSERT INTO "events" VALUES(15,'2026-11-26 11:58:20.351931','root[3397]','lease.acquire','gpu','0000:05:00.0','0000:05:10.0',3,'{"owner": "vm2", "mode": "vfio", "mac": "52:48:fc:d4:4b:57"}');
INSERT INTO "events" VALUES(16,'2026-11-26 11:58:21.975016','root[3398]','lease.reserve','tenant','0000:85:00.0','0000:85:02.2',4,'{"owner": "vm3"}');
INSERT INTO "events" VALUES(17,'2026-11-26 11:58:21.999672','root[3398]','lease.acquire','tenant','0000:85:00.0','0000:85:02.2',4,'{"owner": "vm3", "mode": "macvtap", "mac": "ce:67:be:79:9d:4c"}');
INSERT INTO "events" VALUES(18,'2026-11-26 11:58:23.541229','root[3399]','lease.release','tenant','0000:85:00.0','0000:85:02.2',4,'{"owner": "vm3", "reason": "release --owner vm3", "vf_state": "free", "vf_reason": null}');
CREATE TABLE leases (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, 
	pool_id INTEGER NOT NULL, 
	vf_id INTEGER, 
	pf_pci VARCHAR(16) NOT NULL, 
	vf_pci VARCHAR(16) NOT NULL, 
	vf_index INTEGER NOT NULL, 
	owner VARCHAR(128) NOT NULL, 
	owner_pid INTEGER, 
	token_hash VARCHAR(128) NOT NULL, 
	state VARCHAR(16) NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	mac VARCHAR(17), 
	vlan INTEGER, 
	numa_node INTEGER, 
	applied_config JSON, 
	saved_config JSON, 
	boot_id VARCHAR(64) NOT NULL, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	released_at DATETIME, acquirer VARCHAR(64), 
	CONSTRAINT ck_leases_state CHECK (state IN ('reserved', 'active', 'released', 'stale', 'lost')), 
	CONSTRAINT fk_leases_pool_id_pools FOREIGN KEY(pool_id) REFERENCES pools (id) ON DELETE CASCADE, 
	CONSTRAINT fk_leases_vf_id_vfs FOREIGN KEY(vf_id) REFERENCES vfs (id) ON DELETE SET NULL
);
INSERT INTO "leases" VALUES(1,1,1,'0000:85:00.0','0000:85:02.0',0,'vm1',NULL,'43ba2a681704988bf107b566230e4a63283b986292b00c0147de6cc8769e50ce','active','macvtap','5e:9b:5f:03:34:4a',100,1,'{"mac": "5e:9b:5f:03:34:4a", "vlan": 100, "qos": 0, "spoofchk": null, "trust": null, "link_state": null, "min_tx_rate": null, "max_tx_rate": null, "driver": "iavf", "mtu": null}','{"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": true, "trust": false, "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0, "driver": "iavf", "driver_override": null, "mtu": 1500}','6fdd4e5b-ab0f-4669-ad90-f25d4cf51e6a','2026-11-26 11:58:17.739940','2026-11-26 11:58:17.798804',NULL,NULL);
INSERT INTO "leases" VALUES(2,1,2,'0000:85:00.0','0000:85:02.1',1,'vm1',NULL,'0f353c54920b7329414fa40387e3c6151b57b67e11a3408f494ade37a156b146','active','macvtap','62:f0:c6:e5:57:d8',100,1,'{"mac": "62:f0:c6:e5:57:d8", "vlan": 100, "qos": 0, "spoofchk": null, "trust": null, "link_state": null, "min_tx_rate": null, "max_tx_rate": null, "driver": "iavf", "mtu": null}','{"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": true, "trust": false, "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0, "driver": "iavf", "driver_override": null, "mtu": 1500}','6fdd4e5b-ab0f-4669-ad90-f25d4cf51e6a','2026-11-26 11:58:17.751121','2026-11-26 11:58:17.827140',NULL,NULL);
INSERT INTO "leases" VALUES(3,2,9,'0000:05:00.0','0000:05:10.0',0,'vm2',NULL,'ab21aff6188f75e6ce47f7e55bf778238201ca453ba5996b6976395360fd4e82','active','vfio','52:48:fc:d4:4b:57',NULL,0,'{"mac": "52:48:fc:d4:4b:57", "vlan": 0, "qos": 0, "spoofchk": null, "trust": null, "link_state": null, "min_tx_rate": null, "max_tx_rate": null, "driver": "vfio-pci", "mtu": null}','{"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": true, "trust": false, "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0, "driver": null, "driver_override": null, "mtu": null}','6fdd4e5b-ab0f-4669-ad90-f25d4cf51e6a','2026-11-26 11:58:20.316466','2026-11-26 11:58:20.348509',NULL,NULL);
INSERT INTO "leases" VALUES(4,1,3,'0000:85:00.0','0000:85:02.2',2,'vm3',NULL,'a263e42fed0cbcc2806d3a41680dcd8082f3d0d3153635667354464f4dfd27bd','released','macvtap','ce:67:be:79:9d:4c',100,1,'{"mac": "ce:67:be:79:9d:4c", "vlan": 100, "qos": 0, "spoofchk": null, "trust": null, "link_state": null, "min_tx_rate": null, "max_tx_rate": null, "driver": "iavf", "mtu": null}','{"mac": "00:00:00:00:00:00", "vlan": 0, "qos": 0, "spoofchk": true, "trust": false, "link_state": "auto", "min_tx_rate": 0, "max_tx_rate": 0, "driver": "iavf", "driver_override": null, "mtu": 1500}','6fdd4e5b-ab0f-4669-ad90-f25d4cf51e6a','2026-11-26 11:58:21.970605','2026-11-26 11:58:23.528861','2026-11-26 11:58:23.526732',NULL);
CREATE TABLE pfs (
	pci VARCHAR(16) NOT NULL, 
	netdev VARCHAR(16), 
	driver VARCHAR(64), 
	vendor VARCHAR(4), 
	device VARCHAR(4), 
	totalvfs INTEGER DEFAULT 0 NOT NULL, 
	numa_node INTEGER, 
	first_seen DATETIME NOT NULL, 
	last_seen DATETIME NOT NULL, 
	CONSTRAINT pk_pfs PRIMARY KEY (pci)
);
INSERT INTO "pfs" VALUES('0000:85:00.0','enp133s0f0','i40e','8086','1572',64,1,'2026-11-26 11:58:07.178530','2026-11-26 11:58:11.798976');
INSERT INTO "pfs" VALUES('0000:85:00.1','enp133s0f1','i40e','8086','1572',64,1,'2026-11-26 11:58:07.185466','2026-11-26 11:58:11.809204');
INSERT INTO "pfs" VALUES('0000:05:00.0','enp5s0f0','ixgbe','8086','10fb',63,0,'2026-11-26 11:58:08.756749','2026-11-26 11:58:13.333547');
INSERT INTO "pfs" VALUES('0000:05:00.1','enp5s0f1','ixgbe','8086','10fb',63,0,'2026-11-26 11:58:10.262645','2026-11-26 11:58:10.256481');
CREATE TABLE pool_pfs (
	pool_id INTEGER NOT NULL, 
	pf_pci VARCHAR(16) NOT NULL, 
	position INTEGER NOT NULL, 
	range_start INTEGER, 
	range_end INTEGER, 
	CONSTRAINT pk_pool_pfs PRIMARY KEY (pool_id, pf_pci), 
	CONSTRAINT ck_pool_pfs_range CHECK ((range_start IS NULL AND range_end IS NULL) OR (range_start IS NOT NULL AND range_end IS NOT NULL AND range_start <= range_end)), 
	CONSTRAINT fk_pool_pfs_pool_id_pools FOREIGN KEY(pool_id) REFERENCES pools (id) ON DELETE CASCADE, 
	CONSTRAINT fk_pool_pfs_pf_pci_pfs FOREIGN KEY(pf_pci) REFERENCES pfs (pci)
);
INSERT INTO "pool_pfs" VALUES(1,'0000:85:00.0',0,NULL,NULL);
INSERT INTO "pool_pfs" VALUES(1,'0000:85:00.1',1,0,7);
INSERT INTO "pool_pfs" VALUES(2,'0000:05:00.0',0,NULL,NULL);
INSERT INTO "pool_pfs" VALUES(3,'0000:05:00.1',0,NULL,NULL);
CREATE TABLE pools (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	state VARCHAR(16) DEFAULT 'inactive' NOT NULL, 
	autostart BOOLEAN DEFAULT 0 NOT NULL, 
	method VARCHAR(16) NOT NULL, 
	mode VARCHAR(16) NOT NULL, 
	vfs_per_pf INTEGER NOT NULL, 
	vlan INTEGER, 
	qos INTEGER, 
	trust BOOLEAN, 
	spoofchk BOOLEAN, 
	min_tx_rate INTEGER, 
	max_tx_rate INTEGER, 
	mtu INTEGER, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_pools PRIMARY KEY (id), 
	CONSTRAINT uq_pools_name UNIQUE (name), 
	CONSTRAINT ck_pools_state CHECK (state IN ('inactive', 'active')), 
	CONSTRAINT ck_pools_method CHECK (method IN ('auto', 'sysfs', 'module-param')), 
	CONSTRAINT ck_pools_mode CHECK (mode IN ('vfio', 'macvtap', 'netdev'))
);
INSERT INTO "pools" VALUES(1,'tenant','active',1,'auto','macvtap',4,100,NULL,NULL,NULL,NULL,NULL,NULL,'2026-11-26 11:58:07.187888','2026-11-26 11:58:15.076111');
INSERT INTO "pools" VALUES(2,'gpu','active',0,'auto','vfio',2,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2026-11-26 11:58:08.759215','2026-11-26 11:58:13.344366');
INSERT INTO "pools" VALUES(3,'idle','inactive',0,'auto','netdev',3,NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2026-11-26 11:58:10.265157','2026-11-26 11:58:10.265165');
CREATE TABLE vfs (
	id INTEGER NOT NULL, 
	pf_pci VARCHAR(16) NOT NULL, 
	"index" INTEGER NOT NULL, 
	pci VARCHAR(16) NOT NULL, 
	netdev VARCHAR(16), 
	state VARCHAR(16) DEFAULT 'free' NOT NULL, 
	reason TEXT, 
	updated_at DATETIME NOT NULL, 
	CONSTRAINT pk_vfs PRIMARY KEY (id), 
	CONSTRAINT uq_vfs_pf_pci_index UNIQUE (pf_pci, "index"), 
	CONSTRAINT uq_vfs_pci UNIQUE (pci), 
	CONSTRAINT ck_vfs_state CHECK (state IN ('free', 'leased', 'reserved', 'unusable')), 
	CONSTRAINT fk_vfs_pf_pci_pfs FOREIGN KEY(pf_pci) REFERENCES pfs (pci) ON DELETE CASCADE
);
INSERT INTO "vfs" VALUES(1,'0000:85:00.0',0,'0000:85:02.0','enp133s0f0v0','leased',NULL,'2026-11-26 11:58:17.804153');
INSERT INTO "vfs" VALUES(2,'0000:85:00.0',1,'0000:85:02.1','enp133s0f0v1','leased',NULL,'2026-11-26 11:58:17.830808');
INSERT INTO "vfs" VALUES(3,'0000:85:00.0',2,'0000:85:02.2','enp133s0f0v2','free',NULL,'2026-11-26 11:58:23.533853');
INSERT INTO "vfs" VALUES(4,'0000:85:00.0',3,'0000:85:02.3','enp133s0f0v3','free',NULL,'2026-11-26 11:58:11.807272');
INSERT INTO "vfs" VALUES(5,'0000:85:00.1',0,'0000:85:0a.0','enp133s0f1v0','free',NULL,'2026-11-26 11:58:11.816897');
INSERT INTO "vfs" VALUES(6,'0000:85:00.1',1,'0000:85:0a.1','enp133s0f1v1','free',NULL,'2026-11-26 11:58:11.816902');
INSERT INTO "vfs" VALUES(7,'0000:85:00.1',2,'0000:85:0a.2','enp133s0f1v2','free',NULL,'2026-11-26 11:58:11.816904');
INSERT INTO "vfs" VALUES(8,'0000:85:00.1',3,'0000:85:0a.3','enp133s0f1v3','free',NULL,'2026-11-26 11:58:11.816907');
INSERT INTO "vfs" VALUES(9,'0000:05:00.0',0,'0000:05:10.0',NULL,'leased',NULL,'2026-11-26 11:58:20.352375');
INSERT INTO "vfs" VALUES(10,'0000:05:00.0',1,'0000:05:10.2',NULL,'free',NULL,'2026-11-26 11:58:13.346065');
CREATE INDEX ix_pool_pfs_pf_pci ON pool_pfs (pf_pci);
CREATE INDEX ix_leases_owner ON leases (owner);
CREATE INDEX ix_leases_pool_id_state ON leases (pool_id, state);
CREATE UNIQUE INDEX uq_leases_one_live_per_vf ON leases (vf_id) WHERE state IN ('reserved', 'active');
CREATE INDEX ix_events_at ON events (at);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('events',18);
INSERT INTO "sqlite_sequence" VALUES('leases',4);
COMMIT;
