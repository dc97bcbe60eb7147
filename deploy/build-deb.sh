#!/bin/sh
# Build the agent's Debian package from this work tree:
#
#   deploy/build-deb.sh [OUTDIR]          (default OUTDIR: bin/)
#
# It stages the file tree (the binary, the systemd unit, man pages, a
# root-only /etc/agent and /var/lib/agent) and runs dpkg-deb --build on it;
# nothing but Go, dpkg-deb and gzip is needed. The environment may set:
#
#   VERSION  package and binary version (default: from the newest v* git
#            tag, else 0.0.0~dev)
#   COMMIT   commit recorded in the binary (default: git rev-parse HEAD,
#            else the build info's own)
#   GOARCH   target architecture (default: go env GOARCH)
#
# A release build: VERSION=1.2.0 CGO_ENABLED=0 GOFLAGS=-trimpath deploy/build-deb.sh
set -eu

cd "$(dirname "$0")/.."
out=${1:-bin}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -z "${VERSION:-}" ]; then
	VERSION=$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//; s/-/+/g') || true
	VERSION=${VERSION:-0.0.0~dev}
fi
case $VERSION in
[0-9]*) ;;
*) echo "build-deb: VERSION $VERSION must start with a digit" >&2; exit 2 ;;
esac
COMMIT=${COMMIT:-$(git rev-parse HEAD 2>/dev/null || true)}
goarch=${GOARCH:-$(go env GOARCH)}
case $goarch in
amd64 | arm64 | s390x | riscv64) arch=$goarch ;;
386) arch=i386 ;;
arm) arch=armhf ;;
ppc64le) arch=ppc64el ;;
*) echo "build-deb: no Debian architecture for GOARCH $goarch" >&2; exit 2 ;;
esac

stage=$(mktemp -d "${TMPDIR:-/tmp}/agent-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
# The stage's top is the target's /: mktemp made it 0700, which dpkg would
# apply to / itself.
chmod 0755 "$stage"
# Everything staged is readable by all except what holds secrets; dpkg-deb
# records these modes, and --root-owner-group makes root own every entry.
umask 022

ldflags="-X main.version=$VERSION"
if [ -n "$COMMIT" ]; then
	ldflags="$ldflags -X main.commit=$COMMIT"
fi
mkdir -p "$stage/usr/bin"
GOARCH=$goarch go build -ldflags "$ldflags" -o "$stage/usr/bin/agent" ./cmd/agent

install -D -m 0644 deploy/agent.service "$stage/usr/lib/systemd/system/agent.service"

# Man pages, from the binary's own command tree (when it runs here).
if [ "$goarch" = "$(go env GOHOSTARCH)" ]; then
	"$stage/usr/bin/agent" docs man "$stage/usr/share/man/man1" >/dev/null
	gzip -9n "$stage"/usr/share/man/man1/*.1
fi

doc="$stage/usr/share/doc/agent"
install -d -m 0755 "$doc/examples"
install -m 0644 README.md "$doc/README.md"
install -m 0644 deploy/node.conf.example "$doc/examples/node.conf"

# node.conf may hold the gossip secret and names commands run as root; the
# state directory holds the journal and the listener token: root only.
install -d -m 0700 "$stage/etc/agent" "$stage/etc/agent/svc" "$stage/var/lib/agent"

install -d -m 0755 "$stage/DEBIAN"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<EOF
Package: agent
Version: $VERSION
Architecture: $arch
Maintainer: The agent authors <root@localhost>
Installed-Size: $size
Section: admin
Priority: optional
Description: cluster-aware node agent
 One binary on every node of a cluster: replicated cluster data over
 memberlist heartbeats, service orchestration with failover, hooks,
 event streams and a live web page.
EOF

deb="$out/agent_${VERSION}_${arch}.deb"
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
