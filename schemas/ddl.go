package schemas

import (
	"strings"
	"time"
)

// DDL returns every statement that creates the database and its tables
// from nothing on a server of version v, in the order they must run: the
// database, every table, then the materialized views (their source and
// target tables must exist). ttl is the flows retention (see CreateSQL).
// It is what `flowaudit migrate --print` prints and what Migrate runs on
// an empty database.
func DDL(database string, v ServerVersion, ttl time.Duration) []string {
	out := []string{"CREATE DATABASE IF NOT EXISTS " + QuoteIdent(database)}
	for _, t := range Tables() {
		out = append(out, t.CreateSQL(database, v, ttl))
	}
	for _, t := range Tables() {
		if sql := t.ViewSQL(database); sql != "" {
			out = append(out, sql)
		}
	}
	return out
}

// ClusterDDL is DDL for a cluster (clickhouse.cluster): every statement is ON CLUSTER
// and each table becomes two: NAME_local on every replica with the
// Replicated form of its engine (ZooKeeper path
// /clickhouse/tables/{shard}/{database}/{table}, replica {replica}: the
// servers' macros), and NAME, a Distributed table over NAME_local that
// the sink inserts into and queries read, so nothing else changes. The
// materialized views read and fill the _local tables: each shard rolls up
// its own rows, and reads through the Distributed rollups add the shards
// up (every rollup query aggregates).
func ClusterDDL(database, cluster string, v ServerVersion, ttl time.Duration) []string {
	return clusterDDL(database, v, ttl, cluster)
}

// LocalSuffix names a table's shard-local part on a cluster.
const LocalSuffix = "_local"

// ShardingKey is the Distributed sharding key of a table on a cluster.
// flows is sharded by the sink's input partition: every row of one input
// partition lands on one shard, so sink_progress (per input partition,
// filled on that shard within the INSERT) stays exact when an INSERT
// reaches some shards and not others. Tables read with FINAL or
// argMax (alerts, kafka_offsets, policy_versions) are sharded by their key
// so a key's versions merge on one shard. The rollups are only filled by
// views on each shard; their key serves direct inserts only.
func ShardingKey(table string) string {
	switch table {
	case FlowsTable.Name:
		return "kafka_partition"
	case AccessEventsTable.Name:
		return "cityHash64(src_addr)"
	case AlertsTable.Name:
		return "cityHash64(alert_id)"
	case KafkaOffsetsTable.Name:
		return "cityHash64(consumer_group, topic, partition)"
	case PolicyVersionsTable.Name:
		return "cityHash64(version)"
	case ProbeResultsTable.Name:
		return "cityHash64(run_id)"
	}
	return "rand()"
}

// ReplicatedEngine returns the Replicated form of a MergeTree-family
// engine, such as ReplicatedReplacingMergeTree('path', '{replica}',
// next_offset) for ReplacingMergeTree(next_offset).
func ReplicatedEngine(engine string) string {
	name, args := engine, ""
	if i := strings.IndexByte(engine, '('); i >= 0 {
		name, args = engine[:i], strings.TrimSuffix(engine[i+1:], ")")
	}
	out := "Replicated" + name + "('/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
	if strings.TrimSpace(args) != "" {
		out += ", " + args
	}
	return out + ")"
}

func clusterDDL(database string, v ServerVersion, ttl time.Duration, cluster string) []string {
	on := " ON CLUSTER " + QuoteIdent(cluster)
	out := []string{"CREATE DATABASE IF NOT EXISTS " + QuoteIdent(database) + on}
	for _, t := range Tables() {
		local := t
		local.Name = t.Name + LocalSuffix
		local.Engine = ReplicatedEngine(t.Engine)
		// Replicated tables deduplicate retried inserts by themselves
		// (replicated_deduplication_window).
		local.ModernSettings = ""
		sql := local.CreateSQL(database, v, ttl)
		name := QualifiedName(database, local.Name)
		out = append(out, strings.Replace(sql, name, name+on, 1))
		out = append(out, "CREATE TABLE IF NOT EXISTS "+QualifiedName(database, t.Name)+on+" AS "+name+
			"\nENGINE = Distributed("+quoteString(cluster)+", "+quoteString(database)+", "+quoteString(local.Name)+", "+ShardingKey(t.Name)+")")
	}
	for _, t := range Tables() {
		if t.View == "" {
			continue
		}
		view := strings.ReplaceAll(t.View, "FROM {db}.flows\n", "FROM {db}.flows"+LocalSuffix+"\n")
		out = append(out, "CREATE MATERIALIZED VIEW IF NOT EXISTS "+QualifiedName(database, t.Name+"_mv")+on+
			" TO "+QualifiedName(database, t.Name+LocalSuffix)+" AS\n"+strings.ReplaceAll(view, "{db}", QuoteIdent(database)))
	}
	return out
}
