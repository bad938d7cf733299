package dpop

import (
	"strings"
	"testing"
)

func TestNormalizeURI(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "already normal", in: "https://api.example.com/orders", want: "https://api.example.com/orders"},
		{name: "scheme and host case", in: "HTTPS://API.Example.COM/Orders", want: "https://api.example.com/Orders"},
		{name: "https default port", in: "https://api.example.com:443/x", want: "https://api.example.com/x"},
		{name: "http default port", in: "http://api.example.com:80/x", want: "http://api.example.com/x"},
		{name: "other port kept", in: "https://api.example.com:8443/x", want: "https://api.example.com:8443/x"},
		{name: "leading zeros of the port", in: "https://api.example.com:0443/x", want: "https://api.example.com/x"},
		{name: "empty port", in: "https://api.example.com:/x", want: "https://api.example.com/x"},
		{name: "empty path", in: "https://api.example.com", want: "https://api.example.com/"},
		{name: "query and fragment dropped", in: "https://api.example.com/x?a=1&b=2#frag", want: "https://api.example.com/x"},
		{name: "escape case", in: "https://api.example.com/a%2fb", want: "https://api.example.com/a%2Fb"},
		{name: "escaped unreserved decoded", in: "https://api.example.com/%7Euser/%41", want: "https://api.example.com/~user/A"},
		{name: "dot segments", in: "https://api.example.com/a/./b/../c", want: "https://api.example.com/a/c"},
		{name: "trailing dot-dot", in: "https://api.example.com/a/b/..", want: "https://api.example.com/a/"},
		{name: "dot-dot above root", in: "https://api.example.com/../a", want: "https://api.example.com/a"},
		{name: "IPv6 literal", in: "https://[2001:DB8::1]:443/x", want: "https://[2001:db8::1]/x"},
		{name: "relative", in: "/orders", wantErr: true},
		{name: "other scheme", in: "ftp://api.example.com/x", wantErr: true},
		{name: "user info", in: "https://user@api.example.com/x", wantErr: true},
		{name: "bad port", in: "https://api.example.com:44x/x", wantErr: true},
		{name: "broken escape", in: "https://api.example.com/%zz", wantErr: true},
		{name: "opaque", in: "https:api.example.com", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "port zero", in: "https://api.example.com:00/x", wantErr: true},
		{name: "IPv6 zone", in: "http://[fe80::1%25eth0]/x", wantErr: true},
		{name: "too long", in: "https://h/" + strings.Repeat("a", maxURIBytes), wantErr: true},
		{name: "too long once escaped", in: "https://h/" + strings.Repeat("é", maxURIBytes/2-6), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeURI(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("NormalizeURI(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestTargetURI(t *testing.T) {
	tests := []struct {
		name                       string
		origin, scheme, host, path string
		want                       string
	}{
		{name: "from Envoy's attributes", scheme: "https", host: "api.example.com", path: "/orders?x=1", want: "https://api.example.com/orders"},
		{name: "configured origin wins", origin: "https://public.example.com/", scheme: "http", host: "orders.svc:8080", path: "/orders#f", want: "https://public.example.com/orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TargetURI(tt.origin, tt.scheme, tt.host, tt.path); got != tt.want {
				t.Fatalf("TargetURI = %q, want %q", got, tt.want)
			}
		})
	}
}
