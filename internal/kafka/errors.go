package kafka

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
)

// RecordFault classifies a produce error. It returns a stable reason
// (snake_case, for metrics and dead letters) and true when the error is
// about the record itself: retrying the same record can never succeed,
// but the broker is fine and other records go through, so the stage
// dead-letters this one and goes on. Any other error (broker away, disk
// full, authorization) is about the cluster and returns false: skipping
// records would then lose data that a later attempt delivers.
func RecordFault(err error) (reason string, ok bool) {
	var ke *kerr.Error
	if !errors.As(err, &ke) {
		return "", false
	}
	switch ke {
	case kerr.MessageTooLarge, kerr.RecordListTooLarge:
		return "record_too_large", true
	case kerr.InvalidRecord, kerr.CorruptMessage:
		return "invalid_record", true
	case kerr.InvalidTimestamp:
		return "invalid_timestamp", true
	}
	return "", false
}
