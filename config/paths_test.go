package config

import "testing"

func TestResolvePaths(t *testing.T) {
	tests := []struct {
		root string
		euid int
		home string
		want Paths
	}{
		{"/srv/a1", 1000, "/home/u", Paths{"/srv/a1", "/srv/a1/etc/node.conf", "/srv/a1/etc/svc", "/srv/a1/var", "/srv/a1/var/agent.sock"}},
		{"/srv/a1/", 0, "/root", Paths{"/srv/a1", "/srv/a1/etc/node.conf", "/srv/a1/etc/svc", "/srv/a1/var", "/srv/a1/var/agent.sock"}},
		{"", 0, "/root", Paths{"", "/etc/agent/node.conf", "/etc/agent/svc", "/var/lib/agent", "/var/run/agent.sock"}},
		{"", 1000, "/home/u", Paths{"/home/u/.agent", "/home/u/.agent/etc/node.conf", "/home/u/.agent/etc/svc", "/home/u/.agent/var", "/home/u/.agent/var/agent.sock"}},
	}
	for _, tt := range tests {
		if got := ResolvePaths(tt.root, tt.euid, tt.home); got != tt.want {
			t.Errorf("ResolvePaths(%q, %d, %q) = %+v, want %+v", tt.root, tt.euid, tt.home, got, tt.want)
		}
	}
	if got := ResolvePaths("/r", 0, "").ServiceFile("web"); got != "/r/etc/svc/web.conf" {
		t.Errorf("ServiceFile = %q", got)
	}
}
