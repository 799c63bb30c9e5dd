package schemas

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/flowaudit/flowaudit/schemas/pb"
)

// PolicyVersion is one policy file an enricher applied: the payload of the
// flowaudit.policy.v1 topic and a row of ClickHouse's policy_versions. It
// is rare (one per start or reload), so it goes through the generated
// protobuf code rather than a hand-written codec.
type PolicyVersion struct {
	Version  string // SHA-256 of Content, hex (PolicyVersionOf)
	LoadedAt uint64 // Unix ns
	Path     string
	Content  []byte
	Host     string
	Summary  string
}

// PolicyVersionOf returns the version of a policy file's content: its
// SHA-256 in hex.
func PolicyVersionOf(content []byte) string {
	sum := sha256.Sum256(content)
	return hex.EncodeToString(sum[:])
}

// MarshalPolicyVersion encodes v as policy.proto's PolicyVersion.
func MarshalPolicyVersion(v *PolicyVersion) ([]byte, error) {
	return proto.Marshal(&pb.PolicyVersion{
		Version: v.Version, LoadedAt: v.LoadedAt, Path: v.Path, Content: v.Content, Host: v.Host, Summary: v.Summary,
	})
}

// UnmarshalPolicyVersion decodes a PolicyVersion; errors wrap
// ErrMalformed. A record without a version is malformed.
func UnmarshalPolicyVersion(data []byte, v *PolicyVersion) error {
	var m pb.PolicyVersion
	if err := proto.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%w: policy version: %v", ErrMalformed, err)
	}
	if m.GetVersion() == "" {
		return fmt.Errorf("%w: policy version without version", ErrMalformed)
	}
	*v = PolicyVersion{Version: m.GetVersion(), LoadedAt: m.GetLoadedAt(), Path: m.GetPath(), Content: m.GetContent(),
		Host: m.GetHost(), Summary: m.GetSummary()}
	return nil
}
