#!/usr/bin/env bash
# Builds kube-apiserver, kubelet and kubectl at the Kubernetes release matching the
# k8s.io modules in go.mod (v0.X.Y -> v1.X.Y), and etcd, from the Go module proxy, into
# _output/kube/bin. k8s.io/kubernetes replaces its staging modules with local paths, so
# a scratch module requires it and points each staging module at its release.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=$PWD/_output/kube
staging=$(${GO} list -m -f '{{.Version}}' k8s.io/cri-api)   # v0.37.2
release=v1${staging#v0}                                      # v1.37.2
if [ -x "$out/bin/kubelet" ] && [ "$(cat "$out/release" 2>/dev/null)" = "$release" ]; then
  exit 0
fi
mkdir -p "$out/src/cmd/etcd" "$out/bin"
cd "$out/src"
dir=$(${GO} mod download -json "k8s.io/kubernetes@$release" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
{
  echo "module enroot-cri-kube-build"
  echo
  echo "go 1.26.0"
  echo
  echo "require ("
  echo "	k8s.io/kubernetes $release"
  echo "	go.etcd.io/etcd/server/v3 v3.7.3"
  echo ")"
  echo
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$staging"'#p' "$dir"
} > go.mod
cat > tools.go <<'GO'
//go:build tools

package kubebuild

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
cat > cmd/etcd/main.go <<'GO'
// Command etcd is etcd's server, for the kubelet test's API server.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
GOFLAGS=-mod=mod ${GO} mod tidy
CGO_ENABLED=0 ${GO} build -o "$out/bin/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl ./cmd/etcd
echo "$release" > "$out/release"
echo "built kube-apiserver, kubelet, kubectl $release and etcd into $out/bin"
