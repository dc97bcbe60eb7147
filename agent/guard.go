package agent

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"agent/internal/clip"
)

// guard keeps browsers from driving the TCP listener, whatever its auth
// (the unix socket, guarded by its file mode, does without):
//   - a Host that is not an IP address, localhost or a name of hosts is
//     refused, so a page whose DNS name is rebound to this address gets
//     nothing (421);
//   - a state-changing request (not GET, HEAD or OPTIONS) from another
//     origin, as Sec-Fetch-Site or Origin tell, is refused (403);
//   - a state-changing request with a body must say Content-Type:
//     application/json (415): a page can send text/plain or a form to
//     any address without asking, not JSON.
//
// Websocket upgrades are GETs: the stream handler checks their Origin.
func guard(next http.Handler, hosts []string) http.Handler {
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusForbidden, "cross-origin request refused: a "+r.Method+
			" must come from the agent's own origin or from outside a browser (Origin "+clip.Quote(r.Header.Get("Origin"))+")")
	}))
	inner := cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !safeMethod(r.Method) && r.ContentLength != 0 {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("a %s with a body needs Content-Type: application/json, not %s",
					r.Method, clip.Quote(r.Header.Get("Content-Type"))))
				return
			}
		}
		next.ServeHTTP(w, r)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hostAllowed(r.Host, hosts) {
			writeError(w, http.StatusMisdirectedRequest, "host "+clip.Quote(r.Host)+
				" is not served here: use an IP address, localhost, or a name of [listener] hosts")
			return
		}
		inner.ServeHTTP(w, r)
	})
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// hostAllowed reports whether a Host header (host or host:port, an IPv6
// address in brackets) names this listener: an IP address, localhost, or
// one of names, without regard to case or a final dot.
func hostAllowed(hostport string, names []string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = strings.TrimSuffix(host, ".")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	for _, n := range names {
		if strings.EqualFold(host, strings.TrimSuffix(n, ".")) {
			return true
		}
	}
	return false
}
