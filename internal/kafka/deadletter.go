package kafka

import (
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/schemas/pb"
)

// DeadLetterRecord builds the record that sends input a stage cannot
// process to flowaudit.deadletter.v1: which stage, where the input came
// from (source), a stable reason (snake_case, as in metrics), the error
// and the input itself, cut to maxPayload bytes (negative: whole) and copied, so
// the caller may reuse payload at once. Partition 0 is set for clients
// that partition manually; others ignore it.
func (c Configuration) DeadLetterRecord(stage, source, reason string, err error, payload []byte, maxPayload int) *kgo.Record {
	if maxPayload >= 0 && len(payload) > maxPayload {
		payload = payload[:maxPayload]
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	value, merr := proto.Marshal(&pb.DeadLetter{
		Time:    uint64(time.Now().UnixNano()),
		Stage:   stage,
		Source:  source,
		Reason:  reason,
		Error:   msg,
		Payload: append([]byte(nil), payload...),
	})
	if merr != nil {
		// Only invalid UTF-8 in a string field fails; the input is what
		// matters, so keep it and drop the text.
		value, _ = proto.Marshal(&pb.DeadLetter{Time: uint64(time.Now().UnixNano()), Stage: stage, Reason: reason,
			Payload: append([]byte(nil), payload...)})
	}
	return &kgo.Record{Topic: c.Topic(TopicDeadLetter), Partition: 0, Value: value}
}
