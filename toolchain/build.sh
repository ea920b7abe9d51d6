#!/usr/bin/env bash
# make tools: build the Pulumi CLI from its Go modules into $TOOLS_DIR/bin (default .tools/bin).
#
# The version is the one toolchain/go.mod requires; the flags are the ones Pulumi's own release
# build uses (pulumi/pulumi .goreleaser.yml: CGO_ENABLED=0, tags osusergo and grpcnotrace, the
# version stamped into sdk/v3/go/common/version.Version, which `pulumi version` prints).
# Cached: a second run with the same go.mod, go.sum and this script builds nothing and says so in
# one line. The Go module and build caches are the go command's own (go env GOMODCACHE GOCACHE),
# so a later build on the same machine downloads and compiles nothing it already has.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tools="${TOOLS_DIR:-$(dirname "$here")/.tools}"
bin="$tools/bin"
module=github.com/pulumi/pulumi/pkg/v3
version="$(sed -n "s#^[[:space:]]*${module//./\\.} \(v[^ ]*\).*#\1#p" "$here/go.mod" | head -n1)"
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)"
stamp="$bin/.pulumi.$key"

if [[ -x "$bin/pulumi" && -f "$stamp" ]]; then
  [[ -n "${TOOLS_QUIET:-}" ]] || echo "tools: $bin/pulumi $version is up to date, nothing built"
  exit 0
fi
if ! command -v go >/dev/null 2>&1; then
  echo "cutover: the pulumi CLI is not installed, and building it (make tools) needs Go 1.26.6 or newer: install the CLI (see https://www.pulumi.com/docs/install/) or Go, then run make ${MAKE_GOAL:-tools} again"
  exit 1
fi

mkdir -p "$bin"
started=$SECONDS
echo "tools: building pulumi $version from Go modules into $bin (the first build takes minutes)"
(
  cd "$here"
  # GOTOOLCHAIN=local: never fetch another Go; -mod=readonly: go.mod and go.sum are the pins.
  GOTOOLCHAIN=local GOFLAGS="-mod=readonly ${GOFLAGS:-}" CGO_ENABLED=0 go build -trimpath \
    -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
    -o "$bin/pulumi.new" "$module/cmd/pulumi"
)
mv -f "$bin/pulumi.new" "$bin/pulumi"
rm -f "$bin"/.pulumi.*
touch "$stamp"
echo "tools: built $bin/pulumi $("$bin/pulumi" version) in $((SECONDS - started)) s"
