// Command flowaudit runs the flowaudit pipeline: any one stage, or all of
// them in one process.
package main

import (
	"fmt"
	"io"
	"os"
)

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run every stage in one process (embedded broker when kafka.brokers is empty)", cmdRun},
		{"collect", "run the flow collector: UDP NetFlow/IPFIX/sFlow in, Kafka out", cmdCollect},
		{"enrich", "run the enrich stage: segments, workloads, identities and policy verdicts", cmdEnrich},
		{"detect", "run the detection stage: alerts to ClickHouse and webhooks", cmdDetect},
		{"sink", "run the ClickHouse sink: Kafka in, ClickHouse out", cmdSink},
		{"archive", "run the Parquet archive alone: flows and access events into archive.dir", cmdArchive},
		{"broker", "run the embedded Kafka-protocol broker alone", cmdBroker},
		{"migrate", "create or update the ClickHouse database and tables", cmdMigrate},
		{"policy", "check a policy file: flowaudit policy validate FILE", cmdPolicy},
		{"audit", "segmentation audit: recommend rules from traffic, simulate a draft policy", cmdAudit},
		{"report", "compliance evidence pack (PCI DSS 4.0, SOC 2, ISO 27001): html, pdf, json, csv, signed manifest", cmdReport},
		{"probe", "active segmentation test from this host: expected vs real connection attempts", cmdProbe},
		{"console", "serve the read-only web console: segment map, flows, alerts, audit", cmdConsole},
		{"simulate", "send simulated flows (or access logs) to a collector", cmdSimulate},
		{"version", "print the version", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `flowaudit: access and micro-segmentation auditing from network flows.

Usage: flowaudit COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, `
Every command takes --help. Stages read one YAML file given with --config
(every key optional; see README.md for the keys) and take --check to
validate the configuration and exit.
`)
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "flowaudit: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
