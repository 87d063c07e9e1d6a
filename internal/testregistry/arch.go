package testregistry

import "runtime"

const goarch = runtime.GOARCH
