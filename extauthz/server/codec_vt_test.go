//go:build vtprotobuf

package server

import "testing"

// TestFastMarshalInUse: a build with -tags vtprotobuf (release builds, CI's
// tagged step) marshals answers with go-control-plane's generated code, so
// TestFastCodecMatchesProtobuf and FuzzAnswerEncoding there compare two
// different encoders.
func TestFastMarshalInUse(t *testing.T) {
	if !FastMarshal() {
		t.Fatal("built with -tags vtprotobuf, but CheckResponse has no generated marshalling code")
	}
}
