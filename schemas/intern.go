package schemas

import "unique"

// internString returns b as a string shared with every equal string
// decoded before: enrichment labels (segments, workloads, identities,
// rules) repeat endlessly, so a decoder reusing batches allocates for
// each distinct label once instead of once per flow.
func internString(b []byte) string {
	return unique.Make(string(b)).Value()
}
