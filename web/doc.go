// Package web serves the agent's live page (SPEC section 8, GET / on the
// listener): plain HTML, CSS and JavaScript embedded in the binary, with no
// build step and nothing fetched from the network.
//
// # Routes
//
// Handler answers GET and HEAD of "/" (and "/index.html") with the page and
// of "/static/NAME" with its scripts and style sheet; anything else is a
// JSON 404. The agent mounts it at "/" of the listener, after the more
// specific "/v1/" and "/metrics" routes. All references in the page are
// relative, so it also works under a path prefix.
//
// # What the page expects of the agent
//
// The page opens one websocket on "v1/events?snapshot=1&batch=1" relative
// to itself (so GET /v1/events on the same origin) and, after a drop,
// resumes with "&since=SEQ&epoch=E" where SEQ is the last record it
// applied. It rebuilds the cluster data from the full record and the patch
// records (RFC 6902, implemented in static/patch.js), checks that patch and
// event records come in seq order without a hole, and resynchronises when
// they do not (a progress record ahead of its seq, a patch that does not
// apply, another epoch) by reconnecting: with since when its copy is still
// good, afresh otherwise. A reset record makes it wait for the full record
// that follows.
//
// The log filter is evaluated in the page (static/filter.js): the whole
// language of SPEC section 6 except the gjson extensions (queries "#(...)",
// wildcards, modifiers, pipes), which it refuses with a message. It is not
// passed to the agent, whose filter= would also drop the patch records the
// page needs.
//
// # Authentication
//
// A browser cannot set Authorization on a websocket. With a token, the page
// offers one subprotocol on the websocket: the token itself when it is a
// valid RFC 7230 token (letters, digits and !#$%&'*+-.^_`|~), else "b64."
// followed by the token in unpadded base64url. The listener's auth must
// accept BearerToken(r), which reads the Authorization header and both
// subprotocol forms; stream.Handler echoes the subprotocol back as browsers
// require. To find out why a websocket did not open (browsers do not say),
// the page GETs the same URL with "Authorization: Bearer TOKEN" and asks for
// a token on 401 or 403. The token is kept in sessionStorage, and in
// localStorage when the user ticks "remember". A token given in the page's
// URL (/?token=TOKEN) is taken into sessionStorage and removed from the
// address bar; the page itself and /static/ must then be served without a
// token.
//
// # Headers
//
// Responses carry a Content-Security-Policy that allows only the page's own
// scripts, styles and same-origin connections, an ETag (If-None-Match gives
// 304) and Cache-Control: no-cache, so an upgraded agent serves its new page
// at once.
package web
