package schemas

import "time"

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
