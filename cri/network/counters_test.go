package network

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestParseNetDev(t *testing.T) {
	data := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:    1296      14    1    0    0     0          0         3      788       9    2    0    0     0       0          0
 short: 1 2 3
`
	assert.Equal(t, []Counters{{Name: "eth0", C: [16]uint64{1296, 14, 1, 0, 0, 0, 0, 3, 788, 9, 2}}}, parseNetDev(data))
}
