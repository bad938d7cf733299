package dpop

import (
	"testing"
	"time"
)

func TestNonces(t *testing.T) {
	now := testNow
	clock := func() time.Time { return now }
	oldKey := []byte("old-key-old-key-old-key-old-key-")
	n, err := NewNonces([][]byte{nonceKey, oldKey}, time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	byOld, _ := NewNonces([][]byte{oldKey}, time.Minute, clock)
	byStranger, _ := NewNonces([][]byte{[]byte("stranger-stranger-stranger-stran")}, time.Minute, clock)
	fresh := n.Issue()
	tests := []struct {
		name    string
		nonce   string
		advance time.Duration
		want    bool
	}{
		{name: "fresh", nonce: fresh, want: true},
		{name: "issued under the previous key", nonce: byOld.Issue(), want: true},
		{name: "issued under another key", nonce: byStranger.Issue()},
		{name: "garbage", nonce: "not-a-nonce"},
		{name: "empty", nonce: ""},
		{name: "one bit changed", nonce: flipLast(fresh)},
		{name: "expired", nonce: fresh, advance: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = testNow.Add(tt.advance)
			if got := n.Valid(tt.nonce); got != tt.want {
				t.Fatalf("Valid = %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := NewNonces([][]byte{[]byte("short")}, time.Minute, nil); err == nil {
		t.Error("a short key was accepted")
	}
}

func flipLast(s string) string {
	b := []byte(s)
	if b[len(b)-2] == 'A' {
		b[len(b)-2] = 'B'
	} else {
		b[len(b)-2] = 'A'
	}
	return string(b)
}
