package web

import (
	"encoding/base64"
	"net/http"
	"strings"
)

// TokenProtocolPrefix marks a token sent as a websocket subprotocol in
// unpadded base64url, because it holds characters a subprotocol cannot.
const TokenProtocolPrefix = "b64."

// BearerToken returns the token a request carries, "" when none:
// "Authorization: Bearer TOKEN" first, else, on a websocket upgrade, the
// first Sec-WebSocket-Protocol value, as the page sends it (the token
// itself, or TokenProtocolPrefix and its base64url encoding). The caller
// compares it with the configured token in constant time
// (crypto/subtle.ConstantTimeCompare).
func BearerToken(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, tok, ok := strings.Cut(a, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
		return ""
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return ""
	}
	p := firstProtocol(r.Header)
	if enc, ok := strings.CutPrefix(p, TokenProtocolPrefix); ok {
		b, err := base64.RawURLEncoding.DecodeString(enc)
		if err != nil {
			return ""
		}
		return string(b)
	}
	return p
}

// firstProtocol returns the first token of Sec-WebSocket-Protocol, the one
// stream.Handler echoes back.
func firstProtocol(h http.Header) string {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				return p
			}
		}
	}
	return ""
}
