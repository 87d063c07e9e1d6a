package image

import "runtime"

const goarchForTest = runtime.GOARCH
