"""The CLI matrix of `vfpool report` (issue 6), on the report scenario or an empty store.

Only the Prometheus format carries no timestamp, so it is the one compared with a golden file
here: the same file that the service-level test pins, which proves the CLI adds nothing. The
other formats are pinned at service level with a fixed ``now``.
"""

from __future__ import annotations

from tests.cli.clitest import EMPTY_SIM, LEASE_HELD, REPORT_SCENARIO, Category, report_formats
from vfpool.cli import report_render

report = Category("report", setup=REPORT_SCENARIO, quiet=True, checks=(report_formats,),
                  doc="the inventory report in each format, to stdout or a file")
CATEGORIES = [report]

REPORT = ("report",)
STALE = "stale\n" * 1000  # what --output replaces: other, longer content

report.valid("table", *REPORT,
             stdout_has=("\nPools\nPOOL  STATE     AUTOSTART  MODE    TOTAL  FREE  LEASED  "
                         "RESERVED  UNUSABLE  LEASES\n",
                         "net   active    no         netdev  2      1     1       0         0"
                         "         1\n",
                         "\nEvents (newest 20)\n", "  vm1    1      52:54:00:00:00:01  10    "))
report.valid("table-explicit", *REPORT, "--format", "table", stdout_has=("\nVFs\n",))
report.valid("table-empty", *REPORT,
             stdout_has=("\nPools\nPOOL  STATE  AUTOSTART  MODE  TOTAL  FREE  LEASED  RESERVED  "
                         "UNUSABLE  LEASES\n\nPFs\n",), setup=EMPTY_SIM)
report.valid("json", *REPORT, "--format", "json",
             stdout_has=('"owner": "vm1"', '"lease_age": ', '"leases": 3'))
report.valid("json-flag", *REPORT, "--json", stdout_has=('"generated_at": "',))
report.valid("json-flag-and-format", *REPORT, "--json", "--format", "json",
             stdout_has=('"generated_at": "',))
report.valid("csv", *REPORT, "--format", "csv",
             stdout_has=(",".join(report_render.CSV_COLUMNS) + "\n",
                         "v,0000:85:00.1,enp133s0f1,1,0,0000:85:0a.0,,reserved,,4,reserved,vm4,"))
report.compare("prometheus", "report-metrics.prom", *REPORT, "--format", "prometheus")
report.compare("prometheus-empty", "report-empty.prom", *REPORT, "--format", "prometheus",
               setup=EMPTY_SIM)
report.valid("output-prometheus", *REPORT, "--format", "prometheus", "--output",
             "{tmp}/vfpool.prom", writes=("{tmp}/vfpool.prom", "report-metrics.prom"))
report.valid("output-replaces", *REPORT, "--format", "prometheus", "--output", "{tmp}/old.prom",
             writes=("{tmp}/old.prom", "report-metrics.prom"), files=(("{tmp}/old.prom", STALE),))
report.valid("output-table", *REPORT, "--output", "{tmp}/report.txt")
report.invalid("format-unknown", 2,
               "error: invalid --format 'x': use table, json, csv or prometheus", *REPORT,
               "--format", "x", setup=EMPTY_SIM)
report.invalid("format-case", 2,
               "error: invalid --format 'JSON': use table, json, csv or prometheus", *REPORT,
               "--format", "JSON", setup=EMPTY_SIM)
report.invalid("json-and-csv", 2, "error: give --json or --format csv, not both", *REPORT, "--json",
               "--format", "csv", setup=EMPTY_SIM)
report.invalid("output-missing-directory", 1,
               "error: cannot write {tmp}/nope/vfpool.prom: directory {tmp}/nope does not exist",
               *REPORT, "--format", "prometheus", "--output", "{tmp}/nope/vfpool.prom")
report.invalid("output-is-a-directory", 1, "error: cannot write {tmp}: it is a directory", *REPORT,
               "--output", "{tmp}", setup=EMPTY_SIM)
report.invalid("output-missing-value", 2, "error: option --output needs a value", *REPORT,
               "--output", setup=EMPTY_SIM)
report.invalid("unknown-option", 2, "error: no such option: --bogus", *REPORT, "--bogus",
               setup=EMPTY_SIM)

# `vfpool events` (issue 13): the audit log the report's last section shows the newest of.
events = Category("events", setup=LEASE_HELD, quiet=True,
                  doc="the audit log, filtered, as a table or JSON")
CATEGORIES.append(events)
events.valid("table", "events", stdout_has=("ID  AT", "  lease.acquire  ", "pool.start"))
events.valid("owner-json", "events", "--owner", "vm1", "--json",
             stdout_has=('"action": "lease.acquire"', '"owner": "vm1"'),
             stdout_lacks=('"action": "pool.start"',))
events.valid("action-reverse", "events", "--action", "pool.define", "--reverse",
             stdout_has=("pool.define",), stdout_lacks=("lease.acquire",))
events.valid("since-age", "events", "--since", "1h", "--limit", "1", "--json",
             stdout_has=('"action": "lease.acquire"',), stdout_lacks=('"lease.reserve"',))
events.valid("none-match", "events", "--owner", "nobody", "--json", stdout="[]\n")
events.invalid("since-invalid", 2, "error: invalid --since 'noon': give an ISO 8601 time "
               "(2026-11-26T08:00:00Z) or an age such as 15m, 2h or 1d", "events", "--since",
               "noon")
events.invalid("limit-negative", 2, "error: invalid value for --limit: -1 is not at least 0",
               "events", "--limit", "-1")
events.invalid("lease-not-a-number", 2, "error: invalid value for --lease: 'x' is not a "
               "whole number", "events", "--lease", "x")
events.invalid("pf-unknown", 3, "error: no PF named 'enp9s0f0': no such PCI address or network "
               "interface on this host", "events", "--pf", "enp9s0f0")
